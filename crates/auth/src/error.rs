//! What went wrong reading the password or ACL file, and where.
//!
//! Like the config crate, loading does not stop at the first problem: every
//! bad line is collected, each named by file and line, so an operator fixes
//! the whole file in one go. Messages never repeat a password field: a line
//! that holds a plain-text password is named by its line and user only.

use std::fmt;
use std::path::PathBuf;

/// Which of the two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The `user:hash` file.
    Password,
    /// The access control list.
    Acl,
}

impl fmt::Display for FileKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            FileKind::Password => "password file",
            FileKind::Acl => "ACL file",
        })
    }
}

/// One bad line. Displays as `path:line: problem`, the format editors and
/// terminals turn into a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {problem}", path.display())]
pub struct LineError {
    /// The file as it was given (not canonicalised).
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    pub problem: Problem,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    // ----- password file -----
    /// No `:` between user and hash.
    #[error("expected `user:hash`, found no `:`")]
    MissingColon,
    /// `:hash`.
    #[error("the user name before `:` is empty")]
    EmptyUser,
    /// A user name the password file cannot hold or MQTT cannot carry.
    #[error("user name {user:?} is not valid: {reason}")]
    InvalidUser { user: String, reason: &'static str },
    /// The same user twice: which line wins would be a guess.
    #[error("user `{user}` is already defined on line {first_line}")]
    DuplicateUser { user: String, first_line: usize },
    /// Not a PHC string at all, most likely a password written in clear.
    #[error(
        "the password of `{user}` is not an argon2id hash (a plain-text password?); \
         store a hash instead: run `switchboard passwd {file} {user}`"
    )]
    NotHashed { user: String, file: String },
    /// A PHC string of another algorithm (bcrypt, argon2i, PBKDF2...).
    #[error(
        "the hash of `{user}` uses `{algorithm}`, but only argon2id is accepted; \
         set the password again with `switchboard passwd {file} {user}`"
    )]
    WrongAlgorithm {
        user: String,
        algorithm: String,
        file: String,
    },
    /// Starts like an argon2id PHC string but does not parse, or its
    /// version or parameters are not acceptable.
    #[error("the argon2id hash of `{user}` is not valid: {reason}")]
    InvalidHash { user: String, reason: String },

    // ----- ACL file -----
    /// A first word that is not `user`, `anonymous`, `topic` or `pattern`.
    #[error("unknown directive `{word}`: expected `user`, `anonymous`, `topic` or `pattern`")]
    UnknownDirective { word: String },
    /// `user` with no name.
    #[error("`user` needs a user name")]
    MissingUserName,
    /// `anonymous` takes nothing after it.
    #[error("`anonymous` takes no argument")]
    AnonymousArgument,
    /// `topic` / `pattern` without a filter.
    #[error("`{directive}` needs a topic filter")]
    MissingFilter { directive: &'static str },
    /// The filter is not a valid MQTT topic filter.
    #[error("{filter:?} is not a valid topic filter: {reason}")]
    InvalidFilter { filter: String, reason: String },
    /// `%` followed by something other than `c` or `u`, or `%c`/`%u` in a
    /// `topic` rule, where nothing is substituted.
    #[error("{filter:?}: {reason}")]
    InvalidSubstitution {
        filter: String,
        reason: &'static str,
    },
}

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, unreadable or not UTF-8.
    #[error("cannot read the {kind} {}: {source}", path.display())]
    Read {
        kind: FileKind,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line that does not parse.
    #[error(transparent)]
    Line(#[from] LineError),
}

/// Every problem found in one load of both files, in file and line order.
///
/// Invariant: never empty when returned by this crate. Displays one problem
/// per line.
#[derive(Debug)]
pub struct AuthErrors(pub Vec<AuthError>);

impl AuthErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, AuthError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for AuthErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (number, error) in self.0.iter().enumerate() {
            if number > 0 {
                formatter.write_str("\n")?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AuthErrors {}

/// Hashing a new password failed (only possible with parameters the
/// `argon2` crate refuses; the defaults are always accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot hash the password: {message}")]
pub struct HashError {
    pub message: String,
}

/// Reads a whole file as UTF-8, naming it on failure.
pub(crate) fn read(kind: FileKind, path: &std::path::Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        kind,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_error_shows_path_line_and_problem() {
        let error = LineError {
            path: PathBuf::from("/etc/switchboard/passwd"),
            line: 3,
            problem: Problem::MissingColon,
        };
        assert_eq!(
            error.to_string(),
            "/etc/switchboard/passwd:3: expected `user:hash`, found no `:`"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = AuthErrors(vec![
            AuthError::Line(LineError {
                path: PathBuf::from("acl"),
                line: 1,
                problem: Problem::MissingUserName,
            }),
            AuthError::Read {
                kind: FileKind::Password,
                path: PathBuf::from("pw"),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            },
        ]);
        assert_eq!(
            errors.to_string(),
            "acl:1: `user` needs a user name\ncannot read the password file pw: gone"
        );
        assert_eq!(errors.len(), 2);
    }
}
