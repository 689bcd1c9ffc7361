// Switchboard console: one page, plain JavaScript, no build step and no
// library. Everything it shows comes from the JSON API under /api/v1
// (described at /api/v1/openapi.json) and two Server-Sent Event streams.
//
// Safety: client ids, topics and payloads are chosen by whoever connects to
// the broker, so text only ever reaches the page through textContent (the
// `h` helper); nothing is parsed as HTML. The Content Security Policy allows
// no inline script either.

"use strict";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** Creates an element: attributes, event handlers (`onclick`), children. */
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replaces an element's children, skipping null, undefined and false. */
function fill(element, ...children) {
  element.replaceChildren(...children.flat(Infinity)
    .filter((child) => child !== null && child !== undefined && child !== false));
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function fmtInt(value) {
  return value === null || value === undefined ? "–" : integer.format(value);
}

function fmtRate(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "0";
  if (value < 10) return value.toFixed(1);
  return integer.format(Math.round(value));
}

function fmtBytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  seconds = Math.max(0, Math.floor(seconds));
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const secs = seconds % 60;
  if (days > 0) return `${days}d ${String(hours).padStart(2, "0")}h`;
  if (hours > 0) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
  if (minutes > 0) return `${minutes}m ${String(secs).padStart(2, "0")}s`;
  return `${secs}s`;
}

function fmtClock(ms) {
  const date = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function fmtDateTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

function toast(message, kind) {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind || ""}`, text: message });
  box.append(item);
  setTimeout(() => item.remove(), kind === "bad" ? 6000 : 3500);
}

/** A modal yes/no question; resolves to true when confirmed. */
function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-title" },
      h("div", { class: "body" },
        h("h2", { id: "confirm-title", text: title }),
        h("p", { class: "muted", text })),
      h("footer", {},
        h("button", { type: "button", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "button", class: "danger", "data-confirm": "", onclick: () => dialog.close("ok") }, action)));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("[data-confirm]").focus();
  });
}

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    setLive(false);
    throw new ApiError(0, "the broker cannot be reached", "network");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await response.json() : null;
  if (response.status === 401 && !path.endsWith("/login")) {
    showLogin();
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.message) || response.statusText, data && data.error);
  }
  return data;
}

const encode = encodeURIComponent;

// ---------------------------------------------------------------------------
// Payload display
// ---------------------------------------------------------------------------

/** JSON pretty-printed with coloured tokens, built from text nodes. */
function jsonNodes(text) {
  let pretty;
  try {
    pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch (error) {
    return [document.createTextNode(text)];
  }
  const nodes = [];
  const token = /("(?:\\u[a-fA-F0-9]{4}|\\[^u]|[^\\"])*"(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const match of pretty.matchAll(token)) {
    if (match.index > last) nodes.push(document.createTextNode(pretty.slice(last, match.index)));
    const value = match[0];
    let kind = "n";
    if (value.startsWith('"')) kind = match[2] ? "k" : "s";
    else if (/true|false|null/.test(value)) kind = "b";
    nodes.push(h("span", { class: kind, text: value }));
    last = match.index + value.length;
  }
  if (last < pretty.length) nodes.push(document.createTextNode(pretty.slice(last)));
  return nodes;
}

/** Hex dump: offset, sixteen bytes, printable ASCII. */
function hexDump(hex) {
  const lines = [];
  for (let offset = 0; offset < hex.length / 2; offset += 16) {
    const bytes = [];
    let ascii = "";
    for (let index = offset; index < Math.min(offset + 16, hex.length / 2); index += 1) {
      const pair = hex.slice(index * 2, index * 2 + 2);
      bytes.push(pair);
      const code = parseInt(pair, 16);
      ascii += code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : ".";
    }
    lines.push(`${offset.toString(16).padStart(6, "0")}  ${bytes.join(" ").padEnd(47, " ")}  ${ascii}`);
  }
  return lines.join("\n");
}

/** The payload in the view asked for: "json", "text" or "hex". */
function payloadPre(payload, view, variant) {
  const pre = h("pre", { class: `payload ${variant || ""}`, "data-view": view });
  if (view === "json" && payload.text !== null) pre.append(...jsonNodes(payload.text));
  else if (view === "text" && payload.text !== null) pre.textContent = payload.text === "" ? "(empty)" : payload.text;
  else pre.textContent = payload.size === 0 ? "(empty)" : hexDump(payload.hex);
  return pre;
}

function defaultView(payload) {
  return payload.format === "json" ? "json" : payload.format === "text" ? "text" : "hex";
}

// ---------------------------------------------------------------------------
// Charts (canvas, drawn by hand)
// ---------------------------------------------------------------------------

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/**
 * Draws series of samples over the last `spanMs`: a grid with four value
 * lines, time labels, one line (and a light fill) per series.
 */
function drawChart(canvas, samples, series, format, spanMs) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  const left = 64;
  const right = 12;
  const top = 10;
  const bottom = 24;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const start = now - spanMs;
  let maximum = 0;
  for (const sample of samples) {
    for (const line of series) maximum = Math.max(maximum, sample[line.key]);
  }
  const ceiling = niceCeiling(maximum);
  context.font = "11px system-ui, sans-serif";
  context.textBaseline = "middle";
  context.lineWidth = 1;
  for (let index = 0; index <= 4; index += 1) {
    const value = (ceiling * index) / 4;
    const y = Math.round(top + plotHeight - (plotHeight * index) / 4) + 0.5;
    context.strokeStyle = index === 0 ? "#c7cfda" : "#eef1f5";
    context.beginPath();
    context.moveTo(left, y);
    context.lineTo(width - right, y);
    context.stroke();
    context.fillStyle = "#8a95a5";
    context.textAlign = "right";
    context.fillText(format(value), left - 8, y);
  }
  context.textAlign = "center";
  context.textBaseline = "alphabetic";
  const minutes = Math.round(spanMs / 60000);
  const marks = minutes >= 10 ? [minutes, minutes / 2, 0] : [minutes, 0];
  for (const mark of marks) {
    const x = left + plotWidth * (1 - mark / minutes);
    context.fillStyle = "#8a95a5";
    context.textAlign = mark === minutes ? "left" : mark === 0 ? "right" : "center";
    context.fillText(mark === 0 ? "now" : `−${mark} min`, x, height - 6);
  }
  const xOf = (t) => left + plotWidth * ((t - start) / spanMs);
  const yOf = (value) => top + plotHeight - plotHeight * (value / ceiling);
  for (const line of series) {
    const points = samples.filter((sample) => sample.t >= start);
    if (points.length < 2) continue;
    context.beginPath();
    points.forEach((sample, index) => {
      const x = xOf(sample.t);
      const y = yOf(sample[line.key]);
      if (index === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.strokeStyle = line.color;
    context.lineWidth = 1.75;
    context.lineJoin = "round";
    context.stroke();
    context.lineTo(xOf(points[points.length - 1].t), top + plotHeight);
    context.lineTo(xOf(points[0].t), top + plotHeight);
    context.closePath();
    context.globalAlpha = 0.08;
    context.fillStyle = line.color;
    context.fill();
    context.globalAlpha = 1;
  }
}

// ---------------------------------------------------------------------------
// Shell: top bar, navigation, routing, keyboard
// ---------------------------------------------------------------------------

const PAGES = [
  { key: "overview", title: "Overview", mount: mountOverview },
  { key: "clients", title: "Clients", mount: mountClients },
  { key: "topics", title: "Topics", mount: mountTopics },
  { key: "retained", title: "Retained", mount: mountRetained },
  { key: "live", title: "Live", mount: mountLive },
  { key: "publish", title: "Publish", mount: mountPublish },
];

const shell = {
  session: null,
  cleanup: null,
  main: null,
  nav: null,
  statusTimer: null,
};

function setLive(on) {
  const dot = document.getElementById("live-dot");
  if (!dot) return;
  dot.className = `live-dot ${on ? "on" : "off"}`;
  dot.textContent = on ? "Live" : "Offline";
}

function updateTopBar(status) {
  const uptime = document.getElementById("top-uptime");
  const connections = document.getElementById("top-connections");
  const version = document.getElementById("top-version");
  if (uptime) uptime.textContent = fmtDuration(status.uptime_secs);
  if (connections) connections.textContent = fmtInt(status.connections);
  if (version) version.textContent = `v${status.version}`;
}

function renderShell() {
  const app = document.getElementById("app");
  app.replaceChildren();
  const logout = shell.session && shell.session.method === "admin"
    ? h("button", { class: "link", type: "button", onclick: doLogout }, "Log out")
    : null;
  const top = h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#/overview" },
      h("img", { src: "/favicon.svg", alt: "" }),
      h("span", {}, "Switchboard"),
      h("span", { class: "version", id: "top-version" })),
    h("span", { class: "spacer" }),
    h("span", { class: "top-stat wide" }, "Uptime ", h("b", { id: "top-uptime", text: "–" })),
    h("span", { class: "top-stat" }, "Connections ", h("b", { id: "top-connections", text: "–" })),
    h("span", { class: "live-dot", id: "live-dot", text: "…" }),
    logout);
  const list = h("ul", {});
  PAGES.forEach((page, index) => {
    list.append(h("li", {},
      h("a", { href: `#/${page.key}`, "data-page": page.key },
        h("span", {}, page.title),
        page.key === "live" ? h("span", { class: "badge", id: "live-badge", hidden: true }) : null,
        h("kbd", { "aria-hidden": "true", text: String(index + 1) }))));
  });
  shell.nav = h("nav", { class: "sidebar", "aria-label": "Pages" }, list);
  shell.main = h("main", { id: "main", tabindex: "-1" });
  app.append(h("div", { class: "shell" }, top, shell.nav, shell.main));
  updateLiveBadge();
}

function currentPage() {
  const key = (location.hash.replace(/^#\/?/, "").split("/")[0]) || "overview";
  return PAGES.find((page) => page.key === key) || PAGES[0];
}

function route() {
  if (!shell.main) return;
  const page = currentPage();
  if (shell.cleanup) {
    shell.cleanup();
    shell.cleanup = null;
  }
  for (const link of shell.nav.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === page.key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${page.title} · Switchboard`;
  shell.main.replaceChildren();
  shell.cleanup = page.mount(shell.main) || null;
}

async function refreshTopBar() {
  try {
    const status = await api("GET", "/api/v1/status");
    updateTopBar(status);
    setLive(true);
  } catch (error) {
    if (error.status !== 401) setLive(false);
  }
}

function onKey(event) {
  const target = event.target;
  const typing = target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  if (event.key === "Escape" && typing) {
    target.blur();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector("dialog[open]")) return;
  const index = Number(event.key);
  if (Number.isInteger(index) && index >= 1 && index <= PAGES.length) {
    location.hash = `#/${PAGES[index - 1].key}`;
    event.preventDefault();
  } else if (event.key === "/") {
    const search = shell.main && shell.main.querySelector("[data-search]");
    if (search) {
      search.focus();
      search.select();
      event.preventDefault();
    }
  }
}

// ---------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------

let loginShown = false;

function showLogin() {
  if (loginShown) return;
  loginShown = true;
  stopLive();
  if (shell.cleanup) {
    shell.cleanup();
    shell.cleanup = null;
  }
  clearInterval(shell.statusTimer);
  shell.main = null;
  const app = document.getElementById("app");
  const canLogin = shell.session ? shell.session.login_available : true;
  const error = h("p", { class: "error-text", id: "login-error", role: "alert" });
  const user = h("input", { type: "text", id: "login-user", name: "username", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "login-password", name: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "body" },
    h("div", { class: "field" }, h("label", { for: "login-user" }, "User"), user),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
    error,
    h("button", { class: "primary", type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/api/v1/login", { username: user.value, password: password.value });
      loginShown = false;
      await start();
    } catch (failure) {
      error.textContent = failure.status === 429 ? "Too many attempts; wait a little." : "Wrong user name or password.";
      password.select();
    }
  });
  const body = canLogin
    ? form
    : h("div", { class: "body" },
      h("p", {}, "This console needs credentials, and no admin user is configured."),
      h("p", { class: "muted" }, "Set [http] admin_user and admin_password_hash in the broker's configuration, or use the API with a token."));
  app.replaceChildren(h("div", { class: "login" },
    h("div", { class: "panel" },
      h("header", {}, h("h1", {}, "Switchboard")),
      body)));
  if (canLogin) user.focus();
}

async function doLogout() {
  try {
    await api("POST", "/api/v1/logout");
  } finally {
    shell.session = null;
    showLogin();
  }
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

const HISTORY_MS = 10 * 60 * 1000;

function mountOverview(main) {
  const cards = {};
  const card = (key, label) => {
    const value = h("div", { class: "value num", "data-stat": key, text: "–" });
    const note = h("div", { class: "note", text: "\u00a0" });
    cards[key] = { value, note };
    return h("div", { class: "card" }, h("div", { class: "label", text: label }), value, note);
  };
  const messagesCanvas = h("canvas", { id: "chart-messages", role: "img", "aria-label": "Messages per second, in and out, over the last ten minutes" });
  const bytesCanvas = h("canvas", { id: "chart-bytes", role: "img", "aria-label": "Bytes per second, in and out, over the last ten minutes" });
  const legendValue = () => h("b", { class: "num", text: "–" });
  const legends = { messages_in: legendValue(), messages_out: legendValue(), bytes_in: legendValue(), bytes_out: legendValue() };
  const legend = (inKey, outKey) => h("div", { class: "legend" },
    h("span", {}, h("i", { class: "swatch-in" }), "in", legends[inKey]),
    h("span", {}, h("i", { class: "swatch-out" }), "out", legends[outKey]));
  const dropsBody = h("tbody", {});
  const refusalsBody = h("tbody", {});
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("span", { class: "sub", id: "overview-sub", text: "" })),
    h("section", { class: "cards", "aria-label": "Counts" },
      card("connections", "Connections"),
      card("sessions", "Sessions"),
      card("subscriptions", "Subscriptions"),
      card("retained", "Retained"),
      card("queued", "Queued"),
      card("inflight", "In flight"),
      card("uptime", "Uptime")),
    h("div", { class: "grid-2" },
      h("section", { class: "panel" },
        h("header", {}, h("h2", {}, "Messages / s"), legend("messages_in", "messages_out")),
        h("div", { class: "chart-wrap" }, messagesCanvas)),
      h("section", { class: "panel" },
        h("header", {}, h("h2", {}, "Bytes / s"), legend("bytes_in", "bytes_out")),
        h("div", { class: "chart-wrap" }, bytesCanvas))),
    h("div", { class: "grid-2" },
      h("section", { class: "panel" },
        h("header", {}, h("h2", {}, "Dropped messages"), h("span", { class: "muted", text: "since start" })),
        h("table", { class: "compact" }, dropsBody)),
      h("section", { class: "panel" },
        h("header", {}, h("h2", {}, "Refused and failed"), h("span", { class: "muted", text: "since start" })),
        h("table", { class: "compact" }, refusalsBody))));
  // Legend swatch colours via CSSOM (inline style attributes are blocked by the CSP).
  for (const swatch of main.querySelectorAll(".swatch-in")) swatch.style.background = "var(--in)";
  for (const swatch of main.querySelectorAll(".swatch-out")) swatch.style.background = "var(--out)";

  let samples = [];
  const draw = () => {
    drawChart(messagesCanvas, samples, [
      { key: "messages_in", color: "#1f6feb" },
      { key: "messages_out", color: "#e8833a" },
    ], fmtRate, HISTORY_MS);
    drawChart(bytesCanvas, samples, [
      { key: "bytes_in", color: "#1f6feb" },
      { key: "bytes_out", color: "#e8833a" },
    ], fmtBytes, HISTORY_MS);
  };
  const resize = new ResizeObserver(draw);
  resize.observe(messagesCanvas);
  resize.observe(bytesCanvas);

  const tableRows = (body, rows) => {
    body.replaceChildren(...rows.map(([label, value, key]) => h("tr", {},
      h("td", { text: label }),
      h("td", { class: "num", "data-stat": key, text: fmtInt(value) }))));
  };

  const show = (status) => {
    updateTopBar(status);
    cards.connections.value.textContent = fmtInt(status.connections);
    cards.connections.note.textContent = `${fmtInt(status.totals.connections)} since start`;
    cards.sessions.value.textContent = fmtInt(status.sessions);
    cards.sessions.note.textContent = `${fmtInt(status.sessions_expired)} expired`;
    cards.subscriptions.value.textContent = fmtInt(status.subscriptions);
    cards.subscriptions.note.textContent = "\u00a0";
    cards.retained.value.textContent = fmtInt(status.retained);
    cards.retained.note.textContent = "messages";
    cards.queued.value.textContent = fmtInt(status.queued_messages);
    cards.queued.note.textContent = fmtBytes(status.queued_bytes);
    cards.inflight.value.textContent = fmtInt(status.inflight);
    cards.inflight.note.textContent = "unacknowledged";
    cards.uptime.value.textContent = fmtDuration(status.uptime_secs);
    cards.uptime.note.textContent = `version ${status.version}`;
    const rates = status.rates;
    legends.messages_in.textContent = fmtRate(rates.messages_in);
    legends.messages_out.textContent = fmtRate(rates.messages_out);
    legends.bytes_in.textContent = fmtBytes(rates.bytes_in);
    legends.bytes_out.textContent = fmtBytes(rates.bytes_out);
    const drops = status.drops;
    tableRows(dropsBody, [
      ["Queue full (messages)", drops.queue_full, "drop-queue_full"],
      ["Queue full (bytes)", drops.queue_bytes_full, "drop-queue_bytes_full"],
      ["QoS 0 while offline", drops.qos0_offline, "drop-qos0_offline"],
      ["Expired", drops.expired, "drop-expired"],
      ["Too large for client", drops.too_large, "drop-too_large"],
      ["No subscribers", drops.no_subscribers, "drop-no_subscribers"],
      ["Not authorized", drops.not_authorized, "drop-not_authorized"],
    ]);
    const refusals = status.refusals;
    tableRows(refusalsBody, [
      ["Connections over the limit", refusals.connections],
      ["Protocol errors", refusals.protocol_errors],
      ["Keep-alive timeouts", refusals.keep_alive_timeouts],
      ["Bad credentials", refusals.auth_failures],
      ["Publishes not authorized", refusals.publish_not_authorized],
      ["Subscriptions refused", refusals.subscriptions],
      ["Retained store full", refusals.retained],
      ["Store write failures", refusals.store],
    ]);
    if (status.last_sample && (!samples.length || status.last_sample.t > samples[samples.length - 1].t)) {
      samples.push(status.last_sample);
      const cutoff = status.last_sample.t - HISTORY_MS;
      while (samples.length && samples[0].t < cutoff) samples.shift();
      draw();
    }
  };

  let source = null;
  let closed = false;
  api("GET", "/api/v1/status/history").then((history) => {
    if (closed) return;
    samples = history.samples.concat(samples.filter((sample) => !history.samples.length || sample.t > history.samples[history.samples.length - 1].t));
    draw();
  }).catch(() => {});
  source = new EventSource("/api/v1/status/stream");
  source.addEventListener("status", (event) => {
    setLive(true);
    show(JSON.parse(event.data));
  });
  source.addEventListener("error", () => setLive(false));

  return () => {
    closed = true;
    resize.disconnect();
    if (source) source.close();
  };
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

const clientsState = { q: "", state: "all", sort: "client_id", order: "asc", offset: 0, limit: 50, selected: null };

function mountClients(main) {
  const state = clientsState;
  const search = h("input", {
    type: "search", id: "client-search", class: "grow", "data-search": "", value: state.q,
    placeholder: "Search id, address or user   ( / )", "aria-label": "Search clients",
  });
  const stateSelect = h("select", { id: "client-state", "aria-label": "Which clients" },
    h("option", { value: "all" }, "All sessions"),
    h("option", { value: "connected" }, "Connected"),
    h("option", { value: "disconnected" }, "Disconnected"));
  stateSelect.value = state.state;
  const sortSelect = h("select", { id: "client-sort", "aria-label": "Sort by" },
    ...[["client_id", "Client id"], ["connected_since", "Connected since"], ["subscriptions", "Subscriptions"],
      ["queued", "Queued"], ["inflight", "In flight"], ["bytes_in", "Bytes in"], ["bytes_out", "Bytes out"],
      ["peer", "Address"], ["protocol", "Protocol"]]
      .map(([value, label]) => h("option", { value }, `Sort: ${label}`)));
  sortSelect.value = state.sort;
  const orderButton = h("button", { type: "button", class: "small", id: "client-order", "aria-label": "Reverse the order" });
  const count = h("span", { class: "count", id: "client-count", text: "" });
  const body = h("tbody", { id: "client-rows" });
  const previous = h("button", { type: "button", class: "small" }, "← Previous");
  const next = h("button", { type: "button", class: "small" }, "Next →");
  const pageInfo = h("span", { class: "muted num" });
  const detail = h("aside", { class: "panel detail", id: "client-detail", "aria-label": "Client details", hidden: true });
  const split = h("div", { class: "split single" },
    h("section", { class: "panel" },
      h("div", { class: "toolbar" }, search, stateSelect, sortSelect, orderButton, count),
      h("div", { class: "table-wrap" },
        h("table", {},
          h("thead", {}, h("tr", {},
            h("th", {}, "Client id"),
            h("th", {}, "State"),
            h("th", { class: "hide-narrow hide-detail" }, "Address"),
            h("th", { class: "hide-narrow hide-detail" }, "Protocol"),
            h("th", { class: "num" }, "Subs"),
            h("th", { class: "num" }, "Queued"),
            h("th", { class: "num hide-narrow hide-detail" }, "In flight"),
            h("th", { class: "num hide-narrow" }, "Connected"))),
          body)),
      h("div", { class: "pager" }, pageInfo, previous, next)),
    detail);
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Clients"),
    h("span", { class: "sub" }, "Sessions, connected or waiting for their client")), split);

  const setOrderLabel = () => {
    orderButton.textContent = state.order === "asc" ? "↑ Ascending" : "↓ Descending";
  };
  setOrderLabel();

  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    const query = new URLSearchParams({
      state: state.state, sort: state.sort, order: state.order,
      offset: String(state.offset), limit: String(state.limit),
    });
    if (state.q) query.set("q", state.q);
    let page;
    try {
      page = await api("GET", `/api/v1/clients?${query}`);
    } catch (error) {
      if (error.status !== 401) count.textContent = error.message;
      return;
    }
    if (mine !== generation) return;
    if (page.total > 0 && state.offset >= page.total) {
      state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
      load();
      return;
    }
    renderRows(page);
    if (state.selected) loadDetail(state.selected);
  };

  const renderRows = (page) => {
    const focusedId = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.clientId : null;
    const rows = page.items.map((client) => {
      const button = h("button", {
        type: "button", "data-client-id": client.client_id, title: client.client_id,
        onclick: () => select(client.client_id),
      }, client.client_id);
      return h("tr", { class: client.client_id === state.selected ? "selected" : "", "data-row": client.client_id },
        h("td", { class: "id-cell" }, button),
        h("td", {}, client.connected
          ? h("span", { class: "badge ok" }, "connected")
          : h("span", { class: "badge" }, "offline")),
        h("td", { class: "mono hide-narrow hide-detail", text: client.peer || "–" }),
        h("td", { class: "hide-narrow hide-detail", text: client.protocol }),
        h("td", { class: "num", text: fmtInt(client.subscriptions) }),
        h("td", { class: "num", text: fmtInt(client.queued) }),
        h("td", { class: "num hide-narrow hide-detail", text: fmtInt(client.inflight) }),
        h("td", { class: "num hide-narrow", text: client.connected_since ? fmtDuration((Date.now() - client.connected_since) / 1000) : "–" }));
    });
    body.replaceChildren(...rows);
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: "8", class: "empty" },
        state.q ? "No client matches the search." : "No clients yet. Connect one with: switchboard sub -t '#' -v")));
    }
    if (focusedId) {
      const again = body.querySelector(`button[data-client-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = Math.min(page.offset + page.items.length, page.total);
    count.textContent = `${fmtInt(page.total)} ${page.total === 1 ? "session" : "sessions"}`;
    pageInfo.textContent = `${fmtInt(first)}–${fmtInt(last)} of ${fmtInt(page.total)}`;
    previous.disabled = page.offset === 0;
    next.disabled = page.offset + page.items.length >= page.total;
  };

  const select = (clientId) => {
    state.selected = clientId;
    for (const row of body.querySelectorAll("tr[data-row]")) {
      row.classList.toggle("selected", row.dataset.row === clientId);
    }
    loadDetail(clientId);
  };

  const closeDetail = () => {
    state.selected = null;
    detail.hidden = true;
    split.classList.add("single");
    for (const row of body.querySelectorAll("tr.selected")) row.classList.remove("selected");
  };

  const loadDetail = async (clientId) => {
    let client;
    try {
      client = await api("GET", `/api/v1/clients/${encode(clientId)}`);
    } catch (error) {
      if (error.status === 404) closeDetail();
      return;
    }
    if (state.selected !== clientId) return;
    renderDetail(client);
  };

  const renderDetail = (client) => {
    const row = (label, value, key) => h("tr", {}, h("td", { text: label }),
      h("td", { "data-field": key || null }, value));
    const subscriptions = client.subscription_list.length
      ? h("table", { class: "compact" },
        h("thead", {}, h("tr", {}, h("th", {}, "Filter"), h("th", { class: "num" }, "QoS"), h("th", {}, "Options"))),
        h("tbody", {}, client.subscription_list.map((subscription) => h("tr", {},
          h("td", { class: "mono", text: subscription.filter }),
          h("td", { class: "num", text: String(subscription.qos) }),
          h("td", { class: "muted" }, [
            subscription.no_local ? "no local" : null,
            subscription.retain_as_published ? "retain as published" : null,
            subscription.retain_handling ? `retain handling ${subscription.retain_handling}` : null,
            subscription.identifier ? `id ${subscription.identifier}` : null,
          ].filter(Boolean).join(", ") || "–")))))
      : h("p", { class: "muted", text: "No subscriptions." });
    const disconnect = h("button", {
      type: "button", id: "client-disconnect", disabled: !client.connected,
      onclick: async () => {
        const ok = await confirmDialog("Disconnect client?",
          `${client.client_id} will be disconnected (MQTT 5: reason 0x98, administrative action). Its session stays; the client may reconnect.`,
          "Disconnect");
        if (!ok) return;
        try {
          await api("POST", `/api/v1/clients/${encode(client.client_id)}/disconnect`);
          toast(`Disconnected ${client.client_id}`);
        } catch (error) {
          toast(error.message, "bad");
        }
        load();
      },
    }, "Disconnect");
    const remove = h("button", {
      type: "button", class: "danger", id: "client-delete",
      onclick: async () => {
        const ok = await confirmDialog("Delete session?",
          `The session of ${client.client_id} ends now: its connection closes, its queued messages and subscriptions are dropped, no will is sent.`,
          "Delete session");
        if (!ok) return;
        try {
          await api("DELETE", `/api/v1/sessions/${encode(client.client_id)}`);
          toast(`Deleted the session of ${client.client_id}`);
          closeDetail();
        } catch (error) {
          toast(error.message, "bad");
        }
        load();
      },
    }, "Delete session");
    fill(detail,
      h("header", {},
        h("h2", { text: client.client_id }),
        h("button", { type: "button", class: "small", "aria-label": "Close details", onclick: closeDetail }, "✕")),
      h("div", { class: "body" },
        h("table", { class: "kv" }, h("tbody", {},
          row("State", client.connected ? h("span", { class: "badge ok" }, "connected") : h("span", { class: "badge" }, "offline")),
          row("Address", h("span", { class: "mono", text: client.peer || "–" })),
          row("Protocol", `MQTT ${client.protocol}`),
          row("User", client.username || "–"),
          row("Keep alive", client.keep_alive === null ? "–" : `${fmtInt(client.keep_alive)} s`, "keep_alive"),
          row("Session expiry", client.session_expiry === null ? "never" : fmtDuration(client.session_expiry), "session_expiry"),
          row("Connected since", client.connected_since ? fmtDateTime(client.connected_since) : "–"),
          row("Expires in", client.expires_in === null ? "–" : fmtDuration(client.expires_in)),
          row("In flight", fmtInt(client.inflight), "inflight"),
          row("Queued", `${fmtInt(client.queued)} · ${fmtBytes(client.queued_bytes)}`, "queued"),
          row("Bytes in / out", `${fmtBytes(client.bytes_in)} / ${fmtBytes(client.bytes_out)}`, "bytes"))),
        h("h3", { class: "section-title", text: `Subscriptions (${client.subscriptions})` }),
        subscriptions),
      h("div", { class: "actions" }, disconnect, remove));
    const wasHidden = detail.hidden;
    detail.hidden = false;
    split.classList.remove("single");
    // On narrow screens the details sit below the list: bring them into view.
    if (wasHidden && window.matchMedia("(max-width: 1100px)").matches) {
      detail.scrollIntoView({ block: "start", behavior: "smooth" });
    }
  };

  search.addEventListener("input", debounce(() => {
    state.q = search.value.trim();
    state.offset = 0;
    load();
  }, 200));
  stateSelect.addEventListener("change", () => { state.state = stateSelect.value; state.offset = 0; load(); });
  sortSelect.addEventListener("change", () => { state.sort = sortSelect.value; load(); });
  orderButton.addEventListener("click", () => {
    state.order = state.order === "asc" ? "desc" : "asc";
    setOrderLabel();
    load();
  });
  previous.addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  next.addEventListener("click", () => { state.offset += state.limit; load(); });
  const onEscape = (event) => {
    if (event.key === "Escape" && state.selected && !document.querySelector("dialog[open]")) closeDetail();
  };
  document.addEventListener("keydown", onEscape);

  load();
  const timer = setInterval(load, 3000);
  return () => {
    clearInterval(timer);
    document.removeEventListener("keydown", onEscape);
  };
}

// ---------------------------------------------------------------------------
// Topics and subscriptions
// ---------------------------------------------------------------------------

const topicsState = { view: "tree", q: "", open: new Set([""]) };

function subscriberChip(subscription) {
  return h("span", { class: `chip ${subscription.connected ? "" : "off"}`, title: subscription.connected ? "connected" : "offline" },
    subscription.client_id, h("span", { class: "q", text: `QoS ${subscription.qos}` }));
}

function groupLine(group) {
  return h("div", { class: "group", "data-group": group.group },
    h("span", { class: "badge info", text: `share ${group.group}` }),
    h("span", { class: "muted", text: `${group.members.length} ${group.members.length === 1 ? "member" : "members"}` }),
    group.members.map((member) => subscriberChip(member)));
}

function subtreeCount(node) {
  let count = node.subscriptions.length;
  for (const group of node.shared) count += group.members.length;
  for (const child of node.children) count += subtreeCount(child);
  return count;
}

function treeNode(node, depth) {
  const leaf = node.children.length === 0;
  const details = h("details", { class: leaf ? "leaf" : "", "data-filter": node.topic_filter });
  if (topicsState.open.has(node.topic_filter) || topicsState.q || depth < 2) details.open = true;
  details.addEventListener("toggle", () => {
    if (details.open) topicsState.open.add(node.topic_filter);
    else topicsState.open.delete(node.topic_filter);
  });
  const wild = node.level === "+" || node.level === "#";
  details.append(h("summary", {},
    h("span", { class: `level ${wild ? "wild" : ""}`, text: node.level === "" ? "(empty)" : node.level }),
    h("span", { class: "badge", text: fmtInt(subtreeCount(node)) }),
    node.subscriptions.length || node.shared.length ? h("span", { class: "path", text: node.topic_filter }) : null));
  if (node.subscriptions.length || node.shared.length) {
    details.append(h("div", { class: "subs" },
      node.subscriptions.length ? h("div", {}, node.subscriptions.map(subscriberChip)) : null,
      node.shared.map(groupLine)));
  }
  if (!leaf) {
    details.append(h("ul", {}, node.children.map((child) => h("li", {}, treeNode(child, depth + 1)))));
  }
  return details;
}

function mountTopics(main) {
  const state = topicsState;
  const search = h("input", { type: "search", class: "grow", id: "topic-search", "data-search": "", value: state.q, placeholder: "Search filter or client   ( / )", "aria-label": "Search subscriptions" });
  const treeButton = h("button", { type: "button", "aria-pressed": String(state.view === "tree") }, "Tree");
  const listButton = h("button", { type: "button", "aria-pressed": String(state.view === "flat") }, "List");
  const count = h("span", { class: "count", id: "topic-count" });
  const content = h("div", { id: "topic-content" });
  const groupsBody = h("tbody", {});
  const refresh = h("button", { type: "button", class: "small" }, "Refresh");
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Topics and subscriptions"),
      h("span", { class: "sub" }, "Every filter a session subscribed to, with shared groups and their members")),
    h("section", { class: "panel" },
      h("div", { class: "toolbar" }, search, h("div", { class: "segmented", role: "group", "aria-label": "View" }, treeButton, listButton), refresh, count),
      content),
    h("section", { class: "panel", id: "shared-groups" },
      h("header", {}, h("h2", {}, "Shared groups"), h("span", { class: "muted", text: "$share/{group}/{filter}: each message goes to one member" })),
      h("div", { class: "table-wrap" }, h("table", { class: "compact" },
        h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Filter"), h("th", {}, "Members"))),
        groupsBody))));
  main.lastChild.style.marginTop = "16px";

  const load = async () => {
    const query = new URLSearchParams({ view: "flat", limit: "1000" });
    if (state.q) query.set("q", state.q);
    let flat;
    let tree = null;
    try {
      flat = await api("GET", `/api/v1/subscriptions?${query}`);
      if (state.view === "tree") {
        const treeQuery = new URLSearchParams({ view: "tree" });
        if (state.q) treeQuery.set("q", state.q);
        tree = await api("GET", `/api/v1/subscriptions?${treeQuery}`);
      }
    } catch (error) {
      if (error.status !== 401) content.replaceChildren(h("p", { class: "empty", text: error.message }));
      return;
    }
    count.textContent = `${fmtInt(flat.total)} ${flat.total === 1 ? "subscription" : "subscriptions"}`;
    groupsBody.replaceChildren(...flat.groups.map((group) => h("tr", {},
      h("td", { class: "mono", text: group.group }),
      h("td", { class: "mono", text: group.topic_filter }),
      h("td", {}, group.members.map(subscriberChip)))));
    if (!flat.groups.length) groupsBody.append(h("tr", {}, h("td", { colspan: "3", class: "empty", text: "No shared subscriptions." })));
    if (flat.total === 0) {
      content.replaceChildren(h("p", { class: "empty", text: state.q ? "No subscription matches the search." : "No subscriptions yet." }));
      return;
    }
    if (state.view === "tree" && tree) {
      fill(content, h("div", { class: "tree", id: "topic-tree" },
        h("ul", {}, tree.root.children.map((child) => h("li", {}, treeNode(child, 0))))),
      tree.truncated ? h("p", { class: "muted", text: "Only the first 10,000 subscriptions are shown." }) : null);
    } else {
      fill(content, h("div", { class: "table-wrap" }, h("table", { class: "compact", id: "topic-list" },
        h("thead", {}, h("tr", {}, h("th", {}, "Filter"), h("th", {}, "Client"), h("th", { class: "num" }, "QoS"), h("th", {}, "Options"))),
        h("tbody", {}, flat.items.map((item) => h("tr", {},
          h("td", { class: "mono", text: item.filter }),
          h("td", {}, subscriberChip(item)),
          h("td", { class: "num", text: String(item.qos) }),
          h("td", { class: "muted", text: [item.no_local ? "no local" : "", item.retain_as_published ? "retain as published" : "", item.identifier ? `id ${item.identifier}` : ""].filter(Boolean).join(", ") || "–" })))))),
      flat.total > flat.items.length ? h("p", { class: "muted", text: `Showing ${flat.items.length} of ${flat.total}; narrow the search.` }) : null);
    }
  };
  const setView = (view) => {
    state.view = view;
    treeButton.setAttribute("aria-pressed", String(view === "tree"));
    listButton.setAttribute("aria-pressed", String(view === "flat"));
    load();
  };
  treeButton.addEventListener("click", () => setView("tree"));
  listButton.addEventListener("click", () => setView("flat"));
  refresh.addEventListener("click", load);
  search.addEventListener("input", debounce(() => { state.q = search.value.trim(); load(); }, 200));
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------

const retainedState = { filter: "#", selected: null, view: null };

function viewSwitch(payload, current, onChange) {
  const views = [["text", "Text"], ["json", "JSON"], ["hex", "Hex"]];
  return h("div", { class: "segmented", role: "group", "aria-label": "Show payload as" },
    views.map(([view, label]) => h("button", {
      type: "button",
      "aria-pressed": String(view === current),
      "data-view": view,
      disabled: (view === "json" && payload.format !== "json") || (view === "text" && payload.text === null),
      onclick: () => onChange(view),
    }, label)));
}

function propertiesTable(message) {
  const properties = message.properties;
  const rows = [];
  if (properties.content_type) rows.push(["Content type", properties.content_type]);
  if (properties.payload_format_indicator !== null) rows.push(["Payload format", properties.payload_format_indicator === 1 ? "UTF-8" : "bytes"]);
  if (properties.message_expiry_interval !== null) rows.push(["Expires in", fmtDuration(properties.message_expiry_interval)]);
  if (properties.response_topic) rows.push(["Response topic", properties.response_topic]);
  if (properties.correlation_data) rows.push(["Correlation data", properties.correlation_data]);
  for (const property of properties.user_properties) rows.push([`“${property.key}”`, property.value]);
  if (!rows.length) return null;
  return h("table", { class: "kv" }, h("tbody", {}, rows.map(([key, value]) => h("tr", {},
    h("td", { text: key }), h("td", { class: "mono", text: value })))));
}

function mountRetained(main) {
  const state = retainedState;
  const filter = h("input", { type: "search", class: "grow mono", id: "retained-filter", "data-search": "", value: state.filter, "aria-label": "Topic filter", placeholder: "Topic filter, e.g. sensors/#   ( / )" });
  const loadButton = h("button", { type: "submit", class: "primary" }, "Show");
  const count = h("span", { class: "count", id: "retained-count" });
  const list = h("div", { class: "topic-list", id: "retained-list", role: "list" });
  const viewer = h("section", { class: "panel detail", id: "retained-viewer" });
  const form = h("form", { class: "toolbar" }, filter, loadButton, count);
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Retained messages"),
      h("span", { class: "sub" }, "The last message kept on each topic, sent to new subscribers")),
    h("div", { class: "split" }, h("section", { class: "panel" }, form, list), viewer));

  let items = [];
  const showViewer = () => {
    const message = items.find((item) => item.topic === state.selected);
    if (!message) {
      viewer.replaceChildren(h("div", { class: "empty", text: items.length ? "Select a topic to see its message." : "\u00a0" }));
      return;
    }
    const view = state.view && !(state.view === "json" && message.payload.format !== "json") && !(state.view === "text" && message.payload.text === null)
      ? state.view : defaultView(message.payload);
    const remove = h("button", {
      type: "button", class: "danger", id: "retained-delete",
      onclick: async () => {
        const ok = await confirmDialog("Delete retained message?",
          `The message retained on ${message.topic} is removed. Subscribers are not notified.`, "Delete");
        if (!ok) return;
        try {
          await api("DELETE", `/api/v1/retained/${encode(message.topic)}`);
          toast(`Deleted the retained message on ${message.topic}`);
          state.selected = null;
        } catch (error) {
          toast(error.message, "bad");
        }
        load();
      },
    }, "Delete");
    fill(viewer,
      h("header", {}, h("h2", { text: message.topic })),
      h("div", { class: "body" },
        h("div", { class: "row" },
          h("span", { class: "badge info", text: `QoS ${message.qos}` }),
          h("span", { class: "badge", text: message.payload.format }),
          h("span", { class: "muted num", text: fmtBytes(message.payload.size) }),
          h("span", { class: "spacer" }),
          viewSwitch(message.payload, view, (next) => { state.view = next; showViewer(); })),
        payloadPre(message.payload, view),
        message.payload.truncated ? h("p", { class: "muted", text: "Only the start of this payload is shown." }) : null,
        propertiesTable(message)),
      h("div", { class: "actions" }, remove));
  };

  const renderList = () => {
    list.replaceChildren(...items.map((item) => h("button", {
      type: "button", role: "listitem", "data-topic": item.topic,
      "aria-current": String(item.topic === state.selected),
      onclick: () => {
        state.selected = item.topic;
        state.view = null;
        for (const button of list.querySelectorAll("button")) button.setAttribute("aria-current", String(button.dataset.topic === item.topic));
        showViewer();
      },
    }, h("span", { text: item.topic }), h("span", { class: "muted num", text: fmtBytes(item.payload.size) }))));
    if (!items.length) list.append(h("p", { class: "empty", text: "No retained message matches this filter." }));
  };

  const load = async () => {
    state.filter = filter.value.trim() || "#";
    let result;
    try {
      result = await api("GET", `/api/v1/retained?${new URLSearchParams({ filter: state.filter, limit: "1000" })}`);
    } catch (error) {
      if (error.status !== 401) {
        items = [];
        list.replaceChildren(h("p", { class: "empty", text: error.message }));
        count.textContent = "";
        showViewer();
      }
      return;
    }
    items = result.items;
    count.textContent = `${fmtInt(items.length)}${result.truncated ? "+" : ""} shown · ${fmtInt(result.total)} in all`;
    if (state.selected && !items.some((item) => item.topic === state.selected)) state.selected = null;
    renderList();
    showViewer();
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  load();
  return null;
}

// ---------------------------------------------------------------------------
// Live messages (kept running while other pages are open)
// ---------------------------------------------------------------------------

const MAX_LIVE = 500;
const live = {
  source: null,
  filter: "#",
  status: "idle", // idle | connecting | subscribed | error
  error: "",
  messages: [],
  received: 0,
  dropped: 0,
  paused: false,
  listeners: new Set(),
};

function notifyLive(change) {
  for (const listener of live.listeners) listener(change);
  updateLiveBadge();
}

function updateLiveBadge() {
  const badge = document.getElementById("live-badge");
  if (!badge) return;
  badge.hidden = !live.source;
  badge.textContent = live.source ? fmtInt(live.received) : "";
}

async function startLive(filter) {
  stopLive();
  live.filter = filter;
  live.status = "connecting";
  live.error = "";
  notifyLive({ kind: "status" });
  // Ask the API whether the filter is valid first: an EventSource that is
  // refused cannot read the answer's explanation.
  try {
    await api("GET", `/api/v1/retained?${new URLSearchParams({ filter, limit: "1" })}`);
  } catch (error) {
    live.status = "error";
    live.error = error.message;
    notifyLive({ kind: "status" });
    return;
  }
  const source = new EventSource(`/api/v1/stream?${new URLSearchParams({ filter })}`);
  live.source = source;
  source.addEventListener("subscribed", () => {
    live.status = "subscribed";
    live.error = "";
    notifyLive({ kind: "status" });
  });
  source.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    live.received += 1;
    if (live.paused) {
      notifyLive({ kind: "count" });
      return;
    }
    live.messages.unshift(message);
    if (live.messages.length > MAX_LIVE) live.messages.length = MAX_LIVE;
    notifyLive({ kind: "message", message });
  });
  source.addEventListener("dropped", (event) => {
    live.dropped += JSON.parse(event.data).count;
    notifyLive({ kind: "count" });
  });
  source.addEventListener("error", () => {
    if (live.source !== source) return;
    live.status = source.readyState === EventSource.CLOSED ? "error" : "connecting";
    live.error = source.readyState === EventSource.CLOSED ? "The stream was refused or closed." : "";
    notifyLive({ kind: "status" });
  });
  notifyLive({ kind: "status" });
}

function stopLive() {
  if (live.source) live.source.close();
  live.source = null;
  if (live.status !== "error") live.status = "idle";
  notifyLive({ kind: "status" });
}

function liveMessageNode(message) {
  const view = defaultView(message.payload);
  return h("article", { class: "msg", "data-topic": message.topic },
    h("header", {},
      h("span", { class: "time num", text: fmtClock(message.received_at) }),
      h("span", { class: "topic", text: message.topic }),
      h("span", { class: "badge info", text: `QoS ${message.qos}` }),
      message.retain ? h("span", { class: "badge warn", text: "retained" }) : null,
      message.properties.content_type ? h("span", { class: "badge", text: message.properties.content_type }) : null,
      h("span", { class: "size num", text: fmtBytes(message.payload.size) })),
    payloadPre(message.payload, view, "light"),
    message.payload.truncated ? h("p", { class: "muted", text: "Only the start of this payload is shown." }) : null);
}

function mountLive(main) {
  const filter = h("input", { type: "search", class: "grow mono", id: "live-filter", "data-search": "", value: live.filter, "aria-label": "Topic filter", placeholder: "Topic filter, e.g. sensors/#   ( / )" });
  const start = h("button", { type: "submit", class: "primary", id: "live-start" }, "Subscribe");
  const stop = h("button", { type: "button", id: "live-stop" }, "Stop");
  const pause = h("button", { type: "button", id: "live-pause", "aria-pressed": String(live.paused) });
  const clear = h("button", { type: "button", id: "live-clear" }, "Clear");
  const status = h("span", { class: "muted", id: "live-status", role: "status" });
  const received = h("b", { class: "num", id: "live-received" });
  const dropped = h("b", { class: "num", id: "live-dropped" });
  const shown = h("b", { class: "num", id: "live-shown" });
  const list = h("div", { class: "live-list", id: "live-messages", "aria-live": "off" });
  const form = h("form", { class: "toolbar" }, filter, start, stop, pause, clear);
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Live messages"),
      h("span", { class: "sub" }, "Every message routed to a matching topic, as it happens")),
    h("section", { class: "panel" },
      form,
      h("div", { class: "toolbar" }, status,
        h("span", { class: "stats-line" },
          h("span", {}, received, " received"),
          h("span", {}, shown, " shown"),
          h("span", { title: "Messages this view missed because the browser read too slowly" }, dropped, " missed"))),
      list));

  const renderStatus = () => {
    const text = {
      idle: "Not subscribed.",
      connecting: `Connecting to ${live.filter}…`,
      subscribed: `Subscribed to ${live.filter}`,
      error: live.error || "Error",
    }[live.status];
    status.textContent = text;
    status.className = live.status === "error" ? "error-text" : live.status === "subscribed" ? "" : "muted";
    stop.disabled = !live.source;
    pause.textContent = live.paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(live.paused));
    received.textContent = fmtInt(live.received);
    dropped.textContent = fmtInt(live.dropped);
    shown.textContent = fmtInt(live.messages.length);
  };
  const renderAll = () => {
    list.replaceChildren(...live.messages.map(liveMessageNode));
    if (!live.messages.length) {
      list.append(h("p", { class: "empty", id: "live-empty", text: live.source ? "Waiting for messages…" : "Subscribe to a filter to watch messages." }));
    }
  };
  const listener = (change) => {
    if (change.kind === "message") {
      const empty = list.querySelector("#live-empty");
      if (empty) empty.remove();
      list.prepend(liveMessageNode(change.message));
      while (list.children.length > MAX_LIVE) list.lastChild.remove();
    } else if (change.kind === "status" && !live.messages.length) {
      renderAll();
    }
    renderStatus();
  };
  live.listeners.add(listener);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    startLive(filter.value.trim() || "#");
  });
  stop.addEventListener("click", stopLive);
  pause.addEventListener("click", () => { live.paused = !live.paused; renderStatus(); });
  clear.addEventListener("click", () => {
    live.messages = [];
    live.received = 0;
    live.dropped = 0;
    renderAll();
    renderStatus();
    updateLiveBadge();
  });
  renderAll();
  renderStatus();
  return () => live.listeners.delete(listener);
}

// ---------------------------------------------------------------------------
// Publish
// ---------------------------------------------------------------------------

const publishState = { topic: "", payload: "", encoding: "text", qos: 0, retain: false };

function mountPublish(main) {
  const state = publishState;
  const topic = h("input", { type: "text", class: "mono", id: "pub-topic", name: "topic", required: true, value: state.topic, placeholder: "e.g. devices/lamp/set", autocomplete: "off" });
  const payload = h("textarea", { id: "pub-payload", name: "payload", rows: "6", placeholder: "{\"on\": true}" });
  payload.value = state.payload;
  const encodingText = h("button", { type: "button", "aria-pressed": String(state.encoding === "text") }, "Text");
  const encodingHex = h("button", { type: "button", "aria-pressed": String(state.encoding === "hex") }, "Hex");
  const qos = [0, 1, 2].map((level) => h("label", { class: "check" },
    h("input", { type: "radio", name: "qos", value: String(level), id: `pub-qos-${level}`, checked: state.qos === level }),
    `QoS ${level}`));
  const retain = h("input", { type: "checkbox", id: "pub-retain", checked: state.retain });
  const contentType = h("input", { type: "text", id: "pub-content-type", placeholder: "application/json" });
  const responseTopic = h("input", { type: "text", class: "mono", id: "pub-response-topic" });
  const correlation = h("input", { type: "text", id: "pub-correlation" });
  const expiry = h("input", { type: "number", id: "pub-expiry", min: "0", max: "4294967295", placeholder: "seconds" });
  const utf8 = h("input", { type: "checkbox", id: "pub-utf8" });
  const userRows = h("div", { id: "pub-user-properties" });
  const addUserProperty = (key = "", value = "") => {
    const row = h("div", { class: "row" },
      h("div", { class: "field" }, h("input", { type: "text", "aria-label": "User property name", placeholder: "name", value: key })),
      h("div", { class: "field" }, h("input", { type: "text", "aria-label": "User property value", placeholder: "value", value })),
      h("div", { class: "field" }, h("button", { type: "button", class: "small", "aria-label": "Remove user property", onclick: () => row.remove() }, "Remove")));
    userRows.append(row);
  };
  const result = h("p", { id: "pub-result", role: "status", class: "muted", text: "\u00a0" });
  const submit = h("button", { type: "submit", class: "primary", id: "pub-submit" }, "Publish");
  const form = h("form", { class: "body narrow-form", id: "publish-form" },
    h("div", { class: "field" }, h("label", { for: "pub-topic" }, "Topic"), topic),
    h("div", { class: "field" },
      h("div", { class: "row center" },
        h("label", { for: "pub-payload", class: "label" }, "Payload"),
        h("span", { class: "spacer" }),
        h("div", { class: "segmented", role: "group", "aria-label": "Payload encoding" }, encodingText, encodingHex)),
      payload,
      h("span", { class: "hint", id: "pub-hint" })),
    h("div", { class: "row top" },
      h("div", { class: "field" }, h("span", { class: "label" }, "Quality of service"), h("div", { class: "radio-group", role: "radiogroup", "aria-label": "QoS" }, qos)),
      h("div", { class: "field" }, h("span", { class: "label" }, "Retain"), h("label", { class: "check" }, retain, "Keep as the topic's retained message"))),
    h("details", { class: "more" },
      h("summary", {}, "MQTT 5 properties"),
      h("div", { class: "row" },
        h("div", { class: "field" }, h("label", { for: "pub-content-type" }, "Content type"), contentType),
        h("div", { class: "field" }, h("label", { for: "pub-expiry" }, "Message expiry (s)"), expiry)),
      h("div", { class: "row" },
        h("div", { class: "field" }, h("label", { for: "pub-response-topic" }, "Response topic"), responseTopic),
        h("div", { class: "field" }, h("label", { for: "pub-correlation" }, "Correlation data"), correlation)),
      h("div", { class: "field" }, h("label", { class: "check" }, utf8, "Payload format: UTF-8")),
      h("div", { class: "field" }, h("span", { class: "label" }, "User properties"), userRows,
        h("div", {}, h("button", { type: "button", class: "small", onclick: () => addUserProperty() }, "Add user property")))),
    h("div", { class: "row center" }, submit, h("span", { class: "faint" }, "or Ctrl+Enter")),
    result);
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Publish"),
      h("span", { class: "sub" }, "Send a message as the broker to every matching subscription")),
    h("section", { class: "panel" }, form));

  const setEncoding = (encoding) => {
    state.encoding = encoding;
    encodingText.setAttribute("aria-pressed", String(encoding === "text"));
    encodingHex.setAttribute("aria-pressed", String(encoding === "hex"));
    document.getElementById("pub-hint").textContent = encoding === "hex"
      ? "Hex bytes, e.g. 00 ff 10 (spaces and line breaks ignored)." : "Sent as UTF-8 text.";
  };
  setEncoding(state.encoding);
  encodingText.addEventListener("click", () => setEncoding("text"));
  encodingHex.addEventListener("click", () => setEncoding("hex"));

  const send = async () => {
    state.topic = topic.value;
    state.payload = payload.value;
    state.qos = Number(form.querySelector("input[name=qos]:checked").value);
    state.retain = retain.checked;
    const properties = {};
    if (contentType.value) properties.content_type = contentType.value;
    if (responseTopic.value) properties.response_topic = responseTopic.value;
    if (correlation.value) properties.correlation_data = correlation.value;
    if (expiry.value !== "") properties.message_expiry_interval = Number(expiry.value);
    if (utf8.checked) properties.payload_format_indicator = 1;
    const users = [...userRows.children].map((row) => {
      const inputs = row.querySelectorAll("input");
      return { key: inputs[0].value, value: inputs[1].value };
    }).filter((property) => property.key !== "");
    if (users.length) properties.user_properties = users;
    submit.disabled = true;
    try {
      const published = await api("POST", "/api/v1/publish", {
        topic: state.topic, payload: state.payload, encoding: state.encoding,
        qos: state.qos, retain: state.retain, properties,
      });
      const sessions = published.delivered_to === 1 ? "1 session" : `${fmtInt(published.delivered_to)} sessions`;
      const notes = [];
      if (published.retained) notes.push("retained");
      if (published.durable) notes.push("on disk");
      if (published.quota_exceeded) notes.push("but a queue or the retained store had no room (quota exceeded)");
      result.className = published.quota_exceeded ? "error-text" : "";
      result.textContent = `Published ${fmtBytes(published.payload.size)} to ${published.topic}: delivered to ${sessions}${notes.length ? ", " + notes.join(", ") : ""}.`;
    } catch (error) {
      result.className = "error-text";
      result.textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  topic.focus();
  return null;
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

async function start() {
  let session;
  try {
    session = await api("GET", "/api/v1/session");
  } catch (error) {
    document.getElementById("app").replaceChildren(h("div", { class: "login" },
      h("div", { class: "panel" }, h("div", { class: "body" },
        h("h1", {}, "Switchboard"), h("p", { class: "error-text", text: `The console cannot reach the broker: ${error.message}` })))));
    return;
  }
  shell.session = session;
  if (!session.authenticated) {
    showLogin();
    return;
  }
  loginShown = false;
  renderShell();
  route();
  refreshTopBar();
  clearInterval(shell.statusTimer);
  shell.statusTimer = setInterval(() => {
    if (currentPage().key !== "overview") refreshTopBar();
  }, 3000);
}

window.addEventListener("hashchange", route);
document.addEventListener("keydown", onKey);
start();
