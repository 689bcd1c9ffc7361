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
