// End-to-end tests of the web console: the real broker binary, Debian's
// Chromium driven by playwright-core, and MQTT clients (the broker's own
// `switchboard sub` and `switchboard pub`). Run by scripts/test, or:
//
//   cargo build -p switchboard && cd tests/e2e && npm ci && npm test
//
// Every wait is for a condition (an element, a text, a line of output),
// never a fixed time. Screenshots of each page go to
// target/e2e-screenshots/ (or $E2E_SCREENSHOTS).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, "target");
const binary = process.env.SWITCHBOARD_BIN || path.join(targetDir, "debug", "switchboard");
const screenshots = process.env.E2E_SCREENSHOTS || path.join(root, "target", "e2e-screenshots");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
/** Guard against a hung step; not an assertion about speed. */
const GUARD_MS = 15000;

/** A child process whose output is collected, with a way to wait for a line. */
class Child {
  constructor(name, args) {
    this.name = name;
    this.output = "";
    this.waiters = [];
    this.exited = null;
    this.process = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", RUST_LOG: "info" } });
    const collect = (chunk) => {
      this.output += chunk.toString();
      this.waiters = this.waiters.filter((waiter) => !waiter());
    };
    this.process.stdout.on("data", collect);
    this.process.stderr.on("data", collect);
    this.process.on("exit", (code) => {
      this.exited = code;
      this.waiters = this.waiters.filter((waiter) => !waiter());
    });
  }

  /** Resolves with the first match of `pattern` in the output. */
  waitFor(pattern, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${what} within ${GUARD_MS} ms; output:\n${this.output}`)), GUARD_MS);
      const check = () => {
        const match = this.output.match(pattern);
        if (match) {
          clearTimeout(timer);
          resolve(match);
          return true;
        }
        return false;
      };
      if (!check()) this.waiters.push(check);
    });
  }

  waitForExit() {
    return new Promise((resolve, reject) => {
      if (this.exited !== null) return resolve(this.exited);
      const timer = setTimeout(() => reject(new Error(`${this.name} did not exit; output:\n${this.output}`)), GUARD_MS);
      this.process.on("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  stop() {
    if (this.exited === null) this.process.kill("SIGTERM");
    return this.waitForExit();
  }
}

describe("web console", { timeout: 90000 }, () => {
  let broker;
  let mqttPort;
  let base;
  let context;
  let page;
  const clients = [];
  let profile;

  /** An MQTT client of our own binary against the broker under test. */
  const mqtt = (name, args) => {
    const child = new Child(name, [...args.slice(0, 1), "-h", "127.0.0.1", "-p", String(mqttPort), ...args.slice(1)]);
    clients.push(child);
    return child;
  };

  const shoot = async (name) => {
    await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: false });
  };

  const goto = async (pageKey) => {
    await page.keyboard.press("Escape");
    await page.click(`nav a[data-page="${pageKey}"]`);
    await page.waitForSelector(`nav a[data-page="${pageKey}"][aria-current="page"]`);
  };

  before(async () => {
    assert.ok(fs.existsSync(binary), `build the broker first: ${binary} is missing (cargo build -p switchboard)`);
    fs.mkdirSync(screenshots, { recursive: true });
    broker = new Child("broker", [
      "serve", "--durability", "memory", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--sys-interval-secs", "0",
    ]);
    const mqttLine = await broker.waitFor(/listening on 127\.0\.0\.1:(\d+)/, "MQTT listener line");
    mqttPort = Number(mqttLine[1]);
    const httpLine = await broker.waitFor(/web console and HTTP API on (http:\/\/127\.0\.0\.1:\d+\/)/, "HTTP listener line");
    base = httpLine[1];
    profile = fs.mkdtempSync(path.join(os.tmpdir(), "switchboard-e2e-profile-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1366, height: 820 },
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(GUARD_MS);
    const problems = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console error: ${message.text()}`);
    });
    page.problems = problems;
  });

  after(async () => {
    if (context) await context.close();
    for (const client of clients) await client.stop().catch(() => {});
    if (broker) {
      const code = await broker.stop();
      // SIGTERM is a graceful shutdown: the broker exits 0.
      assert.equal(code, 0, `broker exit code; output:\n${broker.output}`);
    }
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  it("shows the overview with live numbers and charts", async () => {
    mqtt("watcher", ["sub", "-i", "e2e-watcher", "-t", "e2e/#", "-q", "1", "-v"]);
    await page.goto(base);
    await page.waitForSelector("nav a[data-page='overview'][aria-current='page']");
    // The status stream fills the cards; the watcher shows as a connection.
    await page.waitForFunction(() => document.querySelector("[data-stat='connections']")?.textContent === "1");
    await page.waitForFunction(() => document.getElementById("live-dot")?.textContent === "Live");
    const publisher = mqtt("publisher", ["pub", "-i", "e2e-retainer", "-t", "e2e/state", "-m", '{"on": true, "level": 3}', "-r", "-q", "1"]);
    assert.equal(await publisher.waitForExit(), 0, publisher.output);
    await page.waitForFunction(() => document.querySelector("[data-stat='retained']")?.textContent === "1");
    await shoot("overview");
  });

  it("lists a client a test connected, with its details", async () => {
    await goto("clients");
    const row = page.locator("button[data-client-id='e2e-watcher']");
    await row.waitFor();
    await row.click();
    const detail = page.locator("#client-detail");
    await detail.locator("h2", { hasText: "e2e-watcher" }).waitFor();
    await detail.locator("td", { hasText: "MQTT 5.0" }).waitFor();
    await detail.locator("td.mono, td", { hasText: "e2e/#" }).first().waitFor();
    // Search narrows the list.
    await page.fill("#client-search", "watch");
    await page.waitForFunction(() => document.getElementById("client-count")?.textContent === "1 session");
    await shoot("clients");
    await page.fill("#client-search", "");
  });

  it("shows the subscription tree", async () => {
    await goto("topics");
    await page.locator("#topic-tree details[data-filter='e2e/#']").waitFor();
    await page.locator("#topic-tree .chip", { hasText: "e2e-watcher" }).waitFor();
    await shoot("topics");
  });

  it("browses retained messages as JSON and hex", async () => {
    await goto("retained");
    await page.click("button[data-topic='e2e/state']");
    const viewer = page.locator("#retained-viewer");
    await viewer.locator("pre.payload[data-view='json']", { hasText: '"level": 3' }).waitFor();
    await viewer.locator("button[data-view='hex']").click();
    await viewer.locator("pre.payload[data-view='hex']", { hasText: "7b 22 6f 6e" }).waitFor();
    await viewer.locator("button[data-view='json']").click();
    await shoot("retained");
  });

  it("shows a message published by an MQTT client in the live view", async () => {
    await goto("live");
    await page.fill("#live-filter", "e2e/#");
    await page.click("#live-start");
    // Once subscribed, every message routed from now on is shown.
    await page.waitForFunction(() => document.getElementById("live-status")?.textContent === "Subscribed to e2e/#");
    const publisher = mqtt("live-publisher", ["pub", "-i", "e2e-live-pub", "-t", "e2e/live", "-m", '{"hello": "from mqtt"}', "-q", "1"]);
    assert.equal(await publisher.waitForExit(), 0, publisher.output);
    const message = page.locator("#live-messages article.msg[data-topic='e2e/live']");
    await message.waitFor();
    assert.match(await message.locator("pre.payload").textContent(), /"hello": "from mqtt"/);
    await shoot("live");
  });

  it("publishes from the form to a test subscriber", async () => {
    const subscriber = mqtt("form-subscriber", ["sub", "-i", "e2e-form-sub", "-t", "e2e/form", "-q", "1", "-v"]);
    await goto("clients");
    await page.locator("button[data-client-id='e2e-form-sub']").waitFor();
    await goto("publish");
    await page.fill("#pub-topic", "e2e/form");
    await page.fill("#pub-payload", "console-says-hi");
    await page.check("#pub-qos-1");
    await page.click("#pub-submit");
    await page.locator("#pub-result", { hasText: "delivered to" }).waitFor();
    assert.match(await page.textContent("#pub-result"), /delivered to 2 sessions/);
    await subscriber.waitFor(/^e2e\/form console-says-hi$/m, "the published message");
    await shoot("publish");
  });

  it("disconnects a client from the console", async () => {
    const victim = mqtt("victim", ["sub", "-i", "e2e-victim", "-t", "e2e/victim", "-c", "-x", "300", "--no-reconnect"]);
    await goto("clients");
    const row = page.locator("button[data-client-id='e2e-victim']");
    await row.waitFor();
    await row.click();
    const detail = page.locator("#client-detail");
    await detail.locator("h2", { hasText: "e2e-victim" }).waitFor();
    await page.click("#client-disconnect");
    await page.click("dialog[open] button[data-confirm]");
    await page.locator(".toast", { hasText: "Disconnected e2e-victim" }).waitFor();
    // The client's connection is closed; its session stays, offline.
    await victim.waitForExit();
    await detail.locator(".badge", { hasText: "offline" }).waitFor();
    await page.locator("tr[data-row='e2e-victim'] .badge", { hasText: "offline" }).waitFor();
    await shoot("clients-disconnected");
  });

  it("works at phone width", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await goto("overview");
    await page.waitForFunction(() => document.querySelector("[data-stat='sessions']")?.textContent !== "–");
    await shoot("phone-overview");
    await goto("live");
    await page.locator("#live-messages article.msg").first().waitFor();
    await shoot("phone-live");
    await page.setViewportSize({ width: 1366, height: 820 });
    assert.deepEqual(page.problems, []);
  });
});
