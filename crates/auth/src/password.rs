//! The password file: one `user:hash` per line, the hash an argon2id PHC
//! string. See the crate documentation for the format.
//!
//! Verification runs Argon2 with the parameters stored in the user's hash and
//! compares the result in constant time (the `argon2` crate's `Output`
//! comparison). For an unknown user the password is verified anyway, against
//! the hash of a user with the parameters most users in the file have, and
//! the result thrown away: a wrong user name costs the same time as a wrong
//! password, so timing does not reveal which user names exist.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use argon2::password_hash::{PasswordHashString, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::error::{read, AuthError, FileKind, HashError, LineError, Problem};

/// The largest Argon2 memory cost accepted in a hash, in KiB (1 GiB). Each
/// login allocates this much while it is verified, so a larger value is far
/// more likely a typo than a choice, and would let a burst of logins
/// exhaust memory.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Hash identifiers of other schemes, named in the error when a file holds
/// one (a file converted from another broker). Anything else that starts
/// with `$` is reported as "not hashed" without repeating it, because it
/// may be a password that happens to start with `$`.
const KNOWN_OTHER_SCHEMES: &[&str] = &[
    "argon2i",
    "argon2d",
    "2a",
    "2b",
    "2y",
    "1",
    "5",
    "6",
    "7",
    "pbkdf2",
    "pbkdf2-sha256",
    "pbkdf2-sha512",
    "scrypt",
];

/// The cost of a new hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Cost {
    /// OWASP's recommended minimum for argon2id (19 MiB, 2 passes, 1 lane),
    /// the `argon2` crate's default: tens of milliseconds per login on a
    /// server core, years per billion guesses for whoever steals the file.
    pub const DEFAULT: Cost = Cost {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
        parallelism: Params::DEFAULT_P_COST,
    };
}

impl Default for Cost {
    fn default() -> Self {
        Cost::DEFAULT
    }
}

/// Hashes `password` with argon2id (version 19), [`Cost::DEFAULT`] and a
/// random 16-byte salt, as a PHC string for the password file.
pub fn hash_password(password: &[u8]) -> Result<String, HashError> {
    hash_password_with_cost(password, Cost::DEFAULT)
}

/// Like [`hash_password`] with an explicit cost (tests use a small one, as
/// Argon2 is slow in unoptimised builds).
pub fn hash_password_with_cost(password: &[u8], cost: Cost) -> Result<String, HashError> {
    let params =
        Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).map_err(|error| {
            HashError {
                message: error.to_string(),
            }
        })?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| HashError {
            message: error.to_string(),
        })
}

/// Why a user name cannot go into the password file, or `Ok`.
///
/// A name must be non-empty, hold no `:` (the separator), no control
/// characters (the file is line-based, and MQTT forbids U+0000), no
/// surrounding spaces (they would be invisible in the file), must not start
/// with `#` (the line would be a comment) and must fit an MQTT string
/// (65535 bytes).
pub fn check_user_name(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("it is empty");
    }
    if user.contains(':') {
        return Err("it contains `:`, which separates user and hash");
    }
    if user.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if user.trim() != user {
        return Err("it starts or ends with white space");
    }
    if user.starts_with('#') {
        return Err("it starts with `#`, which marks a comment line");
    }
    if user.len() > usize::from(u16::MAX) {
        return Err("it is longer than 65535 bytes, the most MQTT can carry");
    }
    Ok(())
}

/// A parsed password file.
pub struct PasswordFile {
    users: HashMap<String, PasswordHashString>,
    /// The user whose hash an unknown user is verified against (the result
    /// is then discarded); `None` when the file has no users, and so no
    /// user name to reveal.
    reference: Option<String>,
}

impl fmt::Debug for PasswordFile {
    /// Names the users, never the hashes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, Vec<AuthError>> {
        let text = read(FileKind::Password, path).map_err(|error| vec![error])?;
        PasswordFile::parse(&text, path)
            .map_err(|errors| errors.into_iter().map(AuthError::from).collect())
    }

    /// Parses the text of a password file; `path` names it in errors. Every
    /// bad line is reported, in line order.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, Vec<LineError>> {
        let file_name = path.display().to_string();
        let mut users: HashMap<String, PasswordHashString> = HashMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        let mut errors = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_number = index + 1;
            let mut fail = |problem| {
                errors.push(LineError {
                    path: path.to_path_buf(),
                    line: line_number,
                    problem,
                });
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                fail(Problem::MissingColon);
                continue;
            };
            if user.is_empty() {
                fail(Problem::EmptyUser);
                continue;
            }
            if let Err(reason) = check_user_name(user) {
                fail(Problem::InvalidUser {
                    user: user.to_owned(),
                    reason,
                });
                continue;
            }
            if let Some(first_line) = first_lines.get(user) {
                fail(Problem::DuplicateUser {
                    user: user.to_owned(),
                    first_line: *first_line,
                });
                continue;
            }
            first_lines.insert(user.to_owned(), line_number);
            match parse_hash(user, hash.trim(), &file_name) {
                Ok(parsed) => {
                    users.insert(user.to_owned(), parsed);
                }
                Err(problem) => fail(problem),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let reference = reference_user(&users);
        Ok(PasswordFile { users, reference })
    }

    /// Whether `password` is `user`'s password. Takes about as long for an
    /// unknown user as for a known one (see the module documentation).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => Argon2::default()
                .verify_password(password, &hash.password_hash())
                .is_ok(),
            None => self.verify_nothing_with(password),
        }
    }

    /// Spends the time of one verification and fails: for a client that gave
    /// a user name but no password, so that it is answered no faster than a
    /// wrong password.
    pub fn verify_nothing(&self) -> bool {
        self.verify_nothing_with(b"")
    }

    /// Runs a verification whose result is thrown away, then fails.
    fn verify_nothing_with(&self, password: &[u8]) -> bool {
        if let Some(hash) = self
            .reference
            .as_ref()
            .and_then(|user| self.users.get(user))
        {
            let _ = Argon2::default().verify_password(password, &hash.password_hash());
        }
        false
    }

    /// Whether `user` has a line in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Checks one hash field; the problem never quotes the field, which may be
/// a password.
fn parse_hash(user: &str, hash: &str, file: &str) -> Result<PasswordHashString, Problem> {
    let not_hashed = || Problem::NotHashed {
        user: user.to_owned(),
        file: file.to_owned(),
    };
    let Some(rest) = hash.strip_prefix('$') else {
        return Err(not_hashed());
    };
    let algorithm = rest.split('$').next().unwrap_or_default();
    if algorithm != "argon2id" {
        return if KNOWN_OTHER_SCHEMES.contains(&algorithm) {
            Err(Problem::WrongAlgorithm {
                user: user.to_owned(),
                algorithm: algorithm.to_owned(),
                file: file.to_owned(),
            })
        } else {
            Err(not_hashed())
        };
    }
    let invalid = |reason: String| Problem::InvalidHash {
        user: user.to_owned(),
        reason,
    };
    let parsed = PasswordHashString::new(hash).map_err(|error| invalid(error.to_string()))?;
    {
        let phc = parsed.password_hash();
        if phc.version != Some(Version::V0x13.into()) {
            return Err(invalid(
                "expected version 19 (`$argon2id$v=19$...`)".to_owned(),
            ));
        }
        if phc.salt.is_none() || phc.hash.is_none() {
            return Err(invalid("the salt or the hash is missing".to_owned()));
        }
        let params = Params::try_from(&phc).map_err(|error| invalid(error.to_string()))?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(invalid(format!(
                "memory cost m={} is above the limit of {MAX_MEMORY_KIB} KiB (1 GiB)",
                params.m_cost()
            )));
        }
    }
    Ok(parsed)
}

/// The user whose hash has the parameters and output length most users
/// have: an unknown user is verified against it (and always fails), so that
/// the check takes as long as a real one.
fn reference_user(users: &HashMap<String, PasswordHashString>) -> Option<String> {
    let mut counts: HashMap<(String, usize), (usize, &str)> = HashMap::new();
    for (user, hash) in users {
        let phc = hash.password_hash();
        let output_len = phc.hash.map(|output| output.len()).unwrap_or_default();
        let slot = counts
            .entry((phc.params.as_str().to_owned(), output_len))
            .or_insert((0, user.as_str()));
        slot.0 += 1;
        // Deterministic choice among equals, whatever the map's order.
        if user.as_str() < slot.1 {
            slot.1 = user.as_str();
        }
    }
    counts
        .into_values()
        .max_by(|(count_a, user_a), (count_b, user_b)| {
            count_a.cmp(count_b).then(user_b.cmp(user_a))
        })
        .map(|(_, user)| user.to_owned())
}

/// What [`set_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
}

/// Whether `line` is the entry of `user` (comments and other users' lines
/// are not).
fn is_entry_of(line: &str, user: &str) -> bool {
    let line = line.trim();
    !line.starts_with('#') && line.split_once(':').map(|(name, _)| name) == Some(user)
}

/// The text of a password file with `user`'s hash set to `hash`: its line
/// replaced where it was (a duplicate of it dropped), or a line appended.
/// Every other line, comments and lines this version cannot parse included,
/// is kept as it was.
pub fn set_user(text: &str, user: &str, hash: &str) -> (String, Change) {
    let entry = format!("{user}:{hash}");
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    let mut change = Change::Added;
    for line in text.lines() {
        if is_entry_of(line, user) {
            if change == Change::Added {
                out.push_str(&entry);
                out.push('\n');
                change = Change::Updated;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if change == Change::Added {
        out.push_str(&entry);
        out.push('\n');
    }
    (out, change)
}

/// The text of a password file without `user`'s line(s), or `None` when the
/// user is not in it.
pub fn remove_user(text: &str, user: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.lines() {
        if is_entry_of(line, user) {
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Argon2 is slow without optimisation; tests use the smallest cost.
    pub(crate) const CHEAP: Cost = Cost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn hash(password: &str) -> String {
        hash_password_with_cost(password.as_bytes(), CHEAP).unwrap()
    }

    fn parse(text: &str) -> Result<PasswordFile, Vec<LineError>> {
        PasswordFile::parse(text, Path::new("passwd"))
    }

    fn problems(text: &str) -> Vec<(usize, Problem)> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|error| (error.line, error.problem))
            .collect()
    }

    #[test]
    fn hashes_are_argon2id_v19_phc_strings_with_random_salts() {
        let one = hash("secret");
        let two = hash("secret");
        assert!(one.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{one}");
        assert_ne!(one, two, "each hash has its own salt");
        let default = hash_password(b"x").unwrap();
        assert!(
            default.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{default}"
        );
    }

    #[test]
    fn verify_accepts_the_right_password_only() {
        let text = format!(
            "# users\n\nalice:{}\nbob: {}  \n",
            hash("wonderland"),
            hash("builder")
        );
        let file = parse(&text).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.verify("alice", b"wonderland"));
        assert!(file.verify("bob", b"builder"));
        assert!(!file.verify("alice", b"builder"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("alice", b"wonderland "));
        assert!(!file.verify("carol", b"wonderland"));
        assert!(!file.verify("Alice", b"wonderland"));
        assert!(!file.verify_nothing());
    }

    #[test]
    fn an_unknown_user_is_verified_against_a_real_hash() {
        // Equal time is not measurable reliably in a test; what is checked is
        // that the unknown user is checked against a hash with the common
        // parameters, and that even its password does not let them in.
        let heavier = hash_password_with_cost(
            b"x",
            Cost {
                memory_kib: 16,
                ..CHEAP
            },
        )
        .unwrap();
        let text = format!("zed:{}\nalice:{}\nbob:{}\n", heavier, hash("a"), hash("b"));
        let file = parse(&text).unwrap();
        assert_eq!(file.reference.as_deref(), Some("alice"));
        assert!(!file.verify("nobody", b"a"));
        let empty = parse("# nobody yet\n").unwrap();
        assert!(empty.is_empty());
        assert!(!empty.verify("alice", b"a"));
    }

    #[test]
    fn plain_text_passwords_are_refused_with_the_command_to_fix_them() {
        let all = problems("alice:wonderland\nbob:$ecret\n");
        assert_eq!(all.len(), 2, "{all:?}");
        for (line, problem) in &all {
            let message = problem.to_string();
            assert!(matches!(problem, Problem::NotHashed { .. }), "{message}");
            assert!(message.contains("switchboard passwd passwd "), "{message}");
            // The password is never repeated in the message.
            assert!(!message.contains("wonderland"), "{message}");
            assert!(!message.contains("ecret"), "{message}");
            assert!(*line == 1 || *line == 2);
        }
        let error = &parse("\n\nalice:wonderland\n").unwrap_err()[0];
        assert_eq!(
            error.to_string(),
            "passwd:3: the password of `alice` is not an argon2id hash (a plain-text password?); \
             store a hash instead: run `switchboard passwd passwd alice`"
        );
    }

    #[test]
    fn other_schemes_are_named() {
        let all = problems(
            "a:$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n\
             b:$6$salt$abcdef\n\
             c:$2b$12$abcdefghijklmnopqrstuv\n",
        );
        let algorithms: Vec<String> = all
            .iter()
            .map(|(_, problem)| match problem {
                Problem::WrongAlgorithm { algorithm, .. } => algorithm.clone(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(algorithms, vec!["argon2i", "6", "2b"]);
    }

    #[test]
    fn malformed_argon2id_hashes_are_refused() {
        let good = hash("x");
        let v16 = good.replace("$v=19$", "$v=16$");
        let no_version = good.replace("$v=19", "");
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        let huge = good.replace("m=8,", "m=2097152,");
        let zero_t = good.replace("t=1,", "t=0,");
        let text = format!(
            "a:$argon2id$garbage\nb:{v16}\nc:{no_version}\nd:{no_hash}\ne:{huge}\nf:{zero_t}\n"
        );
        let all = problems(&text);
        let lines: Vec<usize> = all.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6], "{all:?}");
        for (_, problem) in &all {
            assert!(matches!(problem, Problem::InvalidHash { .. }), "{problem}");
        }
        assert!(all[4].1.to_string().contains("memory cost"), "{}", all[4].1);
    }

    #[test]
    fn structural_problems_name_their_lines() {
        let good = hash("x");
        let text =
            format!("# comment\nnocolon\n:{good}\nalice:{good}\nalice:{good}\n bob :{good}\n");
        let all = problems(&text);
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0], (2, Problem::MissingColon));
        assert_eq!(all[1], (3, Problem::EmptyUser));
        assert_eq!(
            all[2],
            (
                5,
                Problem::DuplicateUser {
                    user: "alice".into(),
                    first_line: 4
                }
            )
        );
        // " bob :" is trimmed to "bob :", whose name ends in a space.
        assert!(
            matches!(&all[3], (6, Problem::InvalidUser { user, .. }) if user == "bob "),
            "{all:?}"
        );
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let text = format!("alice:{}\r\nbob:{}\r\n", hash("a"), hash("b"));
        let file = parse(&text).unwrap();
        assert!(file.verify("bob", b"b"));
    }

    #[test]
    fn user_names() {
        for good in ["alice", "a b", "ünïcode", "x#y"] {
            assert_eq!(check_user_name(good), Ok(()), "{good}");
        }
        for bad in ["", "a:b", "#a", " a", "a ", "a\nb", "a\0b"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_user_name(&"x".repeat(65536)).is_err());
    }

    #[test]
    fn set_user_adds_or_replaces_in_place_keeping_other_lines() {
        let (text, change) = set_user("", "alice", "H1");
        assert_eq!((text.as_str(), change), ("alice:H1\n", Change::Added));
        let before = "# admins\nalice:H1\n\n#bob:commented\nnot parseable\nbob:H2";
        let (text, change) = set_user(before, "bob", "H3");
        assert_eq!(change, Change::Updated);
        assert_eq!(
            text,
            "# admins\nalice:H1\n\n#bob:commented\nnot parseable\nbob:H3\n"
        );
        let (text, change) = set_user(&text, "carol", "H4");
        assert_eq!(change, Change::Added);
        assert!(text.ends_with("bob:H3\ncarol:H4\n"), "{text}");
        // A duplicate is folded into the first line.
        let (text, _) = set_user("alice:1\nbob:2\nalice:3\n", "alice", "9");
        assert_eq!(text, "alice:9\nbob:2\n");
    }

    #[test]
    fn remove_user_drops_only_that_user() {
        assert_eq!(
            remove_user("# c\nalice:1\nbob:2\n", "alice").as_deref(),
            Some("# c\nbob:2\n")
        );
        assert_eq!(remove_user("alice:1\n", "al"), None);
        assert_eq!(remove_user("#alice:1\n", "alice"), None);
    }

    #[test]
    fn load_names_a_missing_file() {
        let errors = PasswordFile::load(&PathBuf::from("/nonexistent/passwd")).unwrap_err();
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.starts_with("cannot read the password file /nonexistent/passwd:"),
            "{message}"
        );
    }
}
