//! `switchboard passwd`, and the broker's password file, ACL file, anonymous
//! rule and SIGHUP reload, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;

#[test]
fn passwd_then_pub_with_that_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    let (status, stderr) = passwd(&[path, "alice", "--password-stdin"], "wonderland\n");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("added user alice"), "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("alice:$argon2id$v=19$"), "{text}");
    assert!(!text.contains("wonderland"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let broker = Broker::start(&["--password-file", path]);
    let (status, _) = switchboard(
        &broker,
        "pub",
        &["-t", "t", "-m", "hi", "-u", "alice", "-P", "wonderland"],
    );
    assert!(status.success(), "the right password must connect");
    let (status, _) = switchboard(
        &broker,
        "pub",
        &[
            "-t", "t", "-m", "hi", "-u", "alice", "-P", "wrong", "-V", "5",
        ],
    );
    assert!(!status.success(), "a wrong password must be refused");
    let (status, _) = switchboard(
        &broker,
        "pub",
        &[
            "-t",
            "t",
            "-m",
            "hi",
            "-u",
            "bob",
            "-P",
            "wonderland",
            "-V",
            "311",
        ],
    );
    assert!(!status.success(), "an unknown user must be refused");
}

#[test]
fn passwd_updates_and_deletes_and_keeps_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "# our users\n").unwrap();
    for (user, password) in [("alice", "one"), ("bob", "two"), ("alice", "three")] {
        let (status, stderr) = passwd(
            &[path, user, "--password-stdin"],
            &format!("{password}\r\n"),
        );
        assert!(status.success(), "{stderr}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "# our users");
    assert!(lines[1].starts_with("alice:$argon2id$"));
    assert!(lines[2].starts_with("bob:$argon2id$"));

    let (status, stderr) = passwd(&[path, "alice", "--delete"], "");
    assert!(status.success(), "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice"), "{text}");
    assert!(text.contains("bob:"), "{text}");
    let (status, stderr) = passwd(&[path, "alice", "--delete"], "");
    assert!(!status.success());
    assert!(stderr.contains("not in"), "{stderr}");
}

#[test]
fn passwd_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    let (status, stderr) = passwd(&[path, "alice", "--password-stdin"], "\n");
    assert!(!status.success());
    assert!(stderr.contains("empty"), "{stderr}");
    let (status, stderr) = passwd(&[path, "a:b", "--password-stdin"], "x\n");
    assert!(!status.success());
    assert!(stderr.contains("`:`"), "{stderr}");
    // No terminal and no --password-stdin: say how to give the password.
    let (status, stderr) = passwd(&[path, "alice"], "x\n");
    assert!(!status.success());
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    assert!(!file.exists(), "nothing was written");
}

#[test]
fn a_plain_text_password_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "# users\nalice:wonderland\n").unwrap();
    let path = file.to_str().unwrap();
    let stderr = serve_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "memory",
        "--password-file",
        path,
    ]);
    assert!(stderr.contains(&format!("{path}:2:")), "{stderr}");
    assert!(
        stderr.contains(&format!("switchboard passwd {path} alice")),
        "{stderr}"
    );
    assert!(!stderr.contains("wonderland"), "{stderr}");
}

#[test]
fn a_public_listener_needs_a_password_file_or_allow_anonymous() {
    // Validation happens before anything is bound.
    let stderr = serve_fails(&["--listen", "0.0.0.0:0", "--durability", "memory"]);
    assert!(stderr.contains("listen[0].address"), "{stderr}");
    assert!(stderr.contains("auth.password_file"), "{stderr}");
    assert!(stderr.contains("allow_anonymous"), "{stderr}");
}

#[test]
fn anonymous_clients_follow_allow_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let path = file.to_str().unwrap();
    let (status, stderr) = passwd(&[path, "alice", "--password-stdin"], "wonderland\n");
    assert!(status.success(), "{stderr}");
    // Loopback listener, password file: anonymous allowed by default.
    let broker = Broker::start(&["--password-file", path]);
    let (status, _) = switchboard(&broker, "pub", &["-t", "t", "-m", "hi"]);
    assert!(status.success());
    drop(broker);
    let broker = Broker::start(&["--password-file", path, "--allow-anonymous=false"]);
    let (status, _) = switchboard(&broker, "pub", &["-t", "t", "-m", "hi"]);
    assert!(!status.success(), "anonymous must be refused");
    let (status, _) = switchboard(
        &broker,
        "pub",
        &["-t", "t", "-m", "hi", "-u", "alice", "-P", "wonderland"],
    );
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_password_and_acl_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    let path = file.to_str().unwrap();
    let (status, stderr) = passwd(&[path, "alice", "--password-stdin"], "one\n");
    assert!(status.success(), "{stderr}");
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    let broker = Broker::start(&[
        "--password-file",
        path,
        "--acl-file",
        acl.to_str().unwrap(),
        "--allow-anonymous=false",
    ]);
    let publish_as = |user: &str, password: &str| {
        let (status, _) = switchboard(
            &broker,
            "pub",
            &[
                "-t", "a/b", "-m", "x", "-q", "1", "-u", user, "-P", password, "-V", "5",
            ],
        );
        status.success()
    };
    assert!(publish_as("alice", "one"));
    assert!(!publish_as("bob", "two"));

    let (status, stderr) = passwd(&[path, "bob", "--password-stdin"], "two\n");
    assert!(status.success(), "{stderr}");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite a/#\nuser bob\ntopic write a/#\n",
    )
    .unwrap();
    hangup(&broker);
    broker.wait_for_log(&["reloaded the password and ACL files"]);
    assert!(publish_as("bob", "two"));

    // A broken ACL leaves the files in force; the broker keeps running.
    std::fs::write(&acl, "user bob\nnonsense\n").unwrap();
    hangup(&broker);
    broker.wait_for_log(&["reload failed"]);
    assert!(publish_as("bob", "two"));
}

/// The address of the listener named `name`, from its "listening on" line.
fn named_listener(broker: &Broker, name: &str) -> std::net::SocketAddr {
    let marker = format!("listener={name}");
    let start = std::time::Instant::now();
    loop {
        let found = broker.log_lines().iter().find_map(|line| {
            let rest = line.split("listening on ").nth(1)?;
            if !line.contains(&marker) {
                return None;
            }
            rest.split_whitespace().next()?.parse().ok()
        });
        if let Some(address) = found {
            return address;
        }
        assert!(start.elapsed() < GUARD, "no listener {name} reported");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `switchboard pub` as `user` to `address`, v5, QoS 1 on `topic`: whether
/// it succeeded.
fn publish_to(address: std::net::SocketAddr, user: &str, password: &str, topic: &str) -> bool {
    let port = address.port().to_string();
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["pub", "-h", "127.0.0.1", "-p", &port, "-V", "5", "-q", "1"])
        .args(["-t", topic, "-m", "x", "-u", user, "-P", password])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn each_listener_has_its_own_password_file_and_acl_and_sighup_reloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let main_passwd = dir.path().join("passwd");
    let partner_passwd = dir.path().join("partner-passwd");
    let partner_acl = dir.path().join("partner-acl");
    for (file, user, password) in [
        (&main_passwd, "alice", "one"),
        (&partner_passwd, "carol", "two"),
    ] {
        let (status, stderr) = passwd(
            &[file.to_str().unwrap(), user, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(status.success(), "{stderr}");
    }
    std::fs::write(&partner_acl, "user carol\ntopic readwrite partner/#\n").unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\
             [[listener]]\nname = \"partner\"\naddress = \"127.0.0.1:0\"\n\
             password_file = {:?}\nacl_file = {:?}\nallow_anonymous = false\n\
             [auth]\npassword_file = {:?}\n",
            partner_passwd.display().to_string(),
            partner_acl.display().to_string(),
            main_passwd.display().to_string(),
        ),
    )
    .unwrap();
    let broker = start_serve(&[
        "--config",
        config.to_str().unwrap(),
        "--durability",
        "memory",
        "--no-http",
    ])
    .unwrap_or_else(|(status, lines)| panic!("{status:?}\n{}", lines.join("\n")));
    let main = named_listener(&broker, "main");
    let partner = named_listener(&broker, "partner");

    assert!(publish_to(main, "alice", "one", "anything"));
    assert!(publish_to(partner, "carol", "two", "partner/news"));
    assert!(
        !publish_to(main, "carol", "two", "anything"),
        "carol is not a main user"
    );
    assert!(
        !publish_to(partner, "alice", "one", "partner/news"),
        "alice is not a partner user"
    );
    // The partner ACL: partner/# only (v5 PUBACK 0x87 fails `pub`).
    assert!(!publish_to(partner, "carol", "two", "elsewhere"));

    // SIGHUP reloads the listener's own files too.
    let (status, stderr) = passwd(
        &[partner_passwd.to_str().unwrap(), "dave", "--password-stdin"],
        "three\n",
    );
    assert!(status.success(), "{stderr}");
    std::fs::write(
        &partner_acl,
        "user carol\ntopic readwrite partner/#\nuser dave\ntopic write partner/#\n",
    )
    .unwrap();
    hangup(&broker);
    broker.wait_for_log(&["reloaded the password and ACL files", "partner-passwd"]);
    assert!(publish_to(partner, "dave", "three", "partner/news"));
    assert!(!publish_to(main, "dave", "three", "anything"));
}
