//! `switchboard passwd FILE USER`: adds a user to a password file, changes
//! their password, or (`--delete`) removes them.
//!
//! The password is read from the terminal without echo (asked twice), or with
//! `--password-stdin` as the first line of standard input (for scripts). It is
//! hashed with argon2id ([`switchboard_auth::Cost::DEFAULT`]) and a fresh
//! random salt. Every other line of the file is kept as it was.
//!
//! The file is replaced atomically: the new text goes to a temporary file in
//! the same directory, created with mode 0600 (the hashes are not secrets in
//! the clear, but nobody else needs to read them), flushed to disk, then
//! renamed over the old file. A crash leaves either the old file or the new
//! one, never half of one. (A symbolic link at FILE is replaced by a file.)

use std::fs::{self, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use switchboard_auth::{
    check_user_name, hash_password, remove_user, set_user, Change, PasswordFile,
};

/// A password longer than this is refused: Argon2 takes any length, but a
/// megabyte on standard input is a mistake (a binary piped in), not a password.
const MAX_PASSWORD_BYTES: u64 = 4096;

#[derive(Debug, Args)]
pub(crate) struct PasswdArgs {
    /// The password file; created (mode 0600) if it does not exist.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The user to add, change or delete.
    #[arg(value_name = "USER")]
    user: String,
    /// Remove the user instead.
    #[arg(short = 'D', long)]
    delete: bool,
    /// Read the password from the first line of standard input instead of
    /// asking on the terminal.
    #[arg(long, conflicts_with = "delete")]
    password_stdin: bool,
}

pub(crate) fn run(args: PasswdArgs) -> anyhow::Result<()> {
    if let Err(reason) = check_user_name(&args.user) {
        bail!("user name {:?} cannot be used: {reason}", args.user);
    }
    let file = args.file.display().to_string();
    let existing = match fs::read_to_string(&args.file) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("cannot read {file}")),
    };
    let (text, done) = if args.delete {
        let Some(existing) = existing else {
            bail!("{file} does not exist");
        };
        match remove_user(&existing, &args.user) {
            Some(text) => (text, format!("deleted user {} from {file}", args.user)),
            None => bail!("user {} is not in {file}", args.user),
        }
    } else {
        let password = if args.password_stdin {
            read_stdin_password()?
        } else {
            read_terminal_password()?
        };
        if password.is_empty() {
            bail!("the password is empty");
        }
        let hash = hash_password(password.as_bytes())?;
        let (text, change) = set_user(existing.as_deref().unwrap_or_default(), &args.user, &hash);
        let done = match change {
            Change::Added => format!("added user {} to {file}", args.user),
            Change::Updated => format!("changed the password of {} in {file}", args.user),
        };
        (text, done)
    };
    write_atomically(&args.file, &text).with_context(|| format!("cannot write {file}"))?;
    eprintln!("{done}");
    // Lines this command did not touch may still be refused by the broker
    // (a plain-text password written by hand, say): say so now, not at start.
    if let Err(problems) = PasswordFile::parse(&text, &args.file) {
        eprintln!("warning: the broker will refuse {file} until these lines are fixed:");
        for problem in problems {
            eprintln!("  {problem}");
        }
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_stdin_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD_BYTES + 1)
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    if line.len() as u64 > MAX_PASSWORD_BYTES {
        bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes");
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_owned())
}

/// Asks twice on the terminal, without echo. Refuses when standard input is
/// not a terminal: input piped in without `--password-stdin` is more likely
/// a mistake than a wish to be prompted on the terminal anyway.
fn read_terminal_password() -> anyhow::Result<String> {
    let no_terminal = "cannot read the password from the terminal; \
                       give it on standard input with --password-stdin";
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("standard input is not a terminal: give the password on it with --password-stdin");
    }
    let first = rpassword::prompt_password("Password: ").context(no_terminal)?;
    let second = rpassword::prompt_password("Password again: ").context(no_terminal)?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}

/// Replaces `path` with `text`: a temporary file (mode 0600) in the same
/// directory, flushed, then renamed over `path`.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "passwd".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
        return written;
    }
    // The rename itself survives a crash once the directory is flushed.
    #[cfg(unix)]
    if let Ok(directory) = fs::File::open(directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writes_replace_the_file_with_mode_0600() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("passwd");
        write_atomically(&path, "a:1\n").unwrap();
        write_atomically(&path, "b:2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "b:2\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let directory = tempfile::tempdir().unwrap();
        // Renaming a file over a directory fails: the old "file" stays and
        // the temporary file is removed.
        let path = directory.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        assert!(write_atomically(&path, "a:1\n").is_err());
        assert!(path.join("inside").exists());
        assert_eq!(fs::read_dir(directory.path()).unwrap().count(), 1);
    }
}
