//! What went wrong, and where.
//!
//! Loading never stops at the first problem: every problem found is collected
//! into [`ConfigErrors`], each one a [`ConfigError`] that names where the bad
//! value came from (the file with line and column, or the command line and
//! environment) and what is wrong with it. An operator fixing a config file
//! then sees the whole list in one run instead of one error per restart.

use std::fmt;

/// Where a value came from when it was given on the command line or in an
/// environment variable. The binary merges the two (a flag wins over its
/// variable) before handing them over as [`crate::Overrides`], so by then
/// this crate can no longer tell them apart.
pub const OVERRIDES_ORIGIN: &str = "command line or environment";

/// Where a problem was found when no file was given and no override is to
/// blame: only a combination of built-in defaults could produce it.
pub const DEFAULTS_ORIGIN: &str = "built-in defaults";

/// A 1-based line and column in a config file. The column counts characters,
/// not bytes, so it matches what an editor shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// One problem with the configuration.
///
/// Displays as `origin:line:column: problem` (the position left out when
/// there is none), the format editors and terminals turn into a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", self.location())]
pub struct ConfigError {
    /// The file path as given, [`OVERRIDES_ORIGIN`] or [`DEFAULTS_ORIGIN`].
    pub origin: String,
    /// Where in the file; `None` for problems that concern no single place
    /// in a file (an unreadable file, a bad override).
    pub position: Option<Position>,
    /// What is wrong.
    pub problem: Problem,
}

impl ConfigError {
    /// `origin` or `origin:line:column`.
    fn location(&self) -> String {
        match self.position {
            Some(position) => format!("{}:{position}", self.origin),
            None => self.origin.clone(),
        }
    }
}

/// What is wrong with one setting. Keys are named by their full dotted path
/// (`limits.max_packet_size`, `listener[1].address`, listeners counted from 0
/// in file order) so a message is clear even without the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file could not be read: missing, unreadable, not UTF-8.
    #[error("cannot read the config file: {message}")]
    Read {
        /// The operating system's description.
        message: String,
    },
    /// The file is not valid TOML; nothing in it was used.
    #[error("invalid TOML: {message}")]
    Syntax {
        /// The parser's description, on one line.
        message: String,
    },
    /// A key this version does not know. A typo must not be silently ignored:
    /// the setting the operator meant would keep its default.
    #[error("unknown key `{key}` in {section}{}", suggestion_text(.suggestion.as_deref()))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// `the top level`, `[limits]`, `listener[0]`, ...
        section: String,
        /// The closest known key, when one is close enough to be a typo.
        suggestion: Option<&'static str>,
    },
    /// A value of the wrong TOML type (a string where a number belongs).
    #[error("`{key}` must be {expected}, found {found}")]
    WrongType {
        /// Full path of the key.
        key: String,
        /// What the setting takes, e.g. `an integer`.
        expected: &'static str,
        /// The TOML type that was given.
        found: &'static str,
    },
    /// A number outside what the setting allows.
    #[error("`{key}` = {value} is out of range: {allowed}")]
    OutOfRange {
        /// Full path of the key.
        key: String,
        /// The value as given.
        value: String,
        /// The allowed range and the reason for it.
        allowed: String,
    },
    /// A value of the right type that is still not acceptable (an unknown
    /// durability mode, an address that does not parse).
    #[error("`{key}` = {value} is not valid: {expected}")]
    InvalidValue {
        /// Full path of the key.
        key: String,
        /// The value as given, written as in TOML (strings quoted).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A required key is absent.
    #[error("`{key}` is required")]
    MissingKey {
        /// Full path of the key.
        key: String,
    },
    /// Two settings that are each fine but contradict each other, or a
    /// setting that collides with another entry (two listeners on one
    /// address).
    #[error("{message}")]
    Conflict {
        /// The two settings, their values, and why they clash.
        message: String,
    },
}

fn suggestion_text(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(key) => format!("; did you mean `{key}`?"),
        None => String::new(),
    }
}

/// Every problem found in one load: those in the file first, from top to
/// bottom, then the others (an unreadable file, the command line and
/// environment).
///
/// Invariant: a `ConfigErrors` returned by this crate is never empty.
/// Displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a value returned by this crate; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
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

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_origin_line_column_and_problem() {
        let error = ConfigError {
            origin: "broker.toml".into(),
            position: Some(Position { line: 3, column: 7 }),
            problem: Problem::MissingKey {
                key: "listener[0].address".into(),
            },
        };
        assert_eq!(
            error.to_string(),
            "broker.toml:3:7: `listener[0].address` is required"
        );
    }

    #[test]
    fn display_without_position_has_origin_only() {
        let error = ConfigError {
            origin: OVERRIDES_ORIGIN.into(),
            position: None,
            problem: Problem::OutOfRange {
                key: "limits.max_inflight".into(),
                value: "0".into(),
                allowed: "1..=65535".into(),
            },
        };
        assert_eq!(
            error.to_string(),
            "command line or environment: `limits.max_inflight` = 0 is out of range: 1..=65535"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let one = ConfigError {
            origin: "a.toml".into(),
            position: Some(Position { line: 1, column: 1 }),
            problem: Problem::UnknownKey {
                key: "prot".into(),
                section: "[limits]".into(),
                suggestion: Some("port"),
            },
        };
        let two = ConfigError {
            origin: "a.toml".into(),
            position: None,
            problem: Problem::Read {
                message: "denied".into(),
            },
        };
        let errors = ConfigErrors(vec![one, two]);
        assert_eq!(
            errors.to_string(),
            "a.toml:1:1: unknown key `prot` in [limits]; did you mean `port`?\n\
             a.toml: cannot read the config file: denied"
        );
        assert_eq!(errors.len(), 2);
    }
}
