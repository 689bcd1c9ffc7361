//! The access control list: who may publish to, subscribe to and receive
//! from which topics. See the crate documentation for the file format and
//! the evaluation order; this module implements exactly that.

use std::collections::HashMap;
use std::path::Path;

use switchboard_topic::{matches, validate_topic_filter, TopicLimits, SHARED_PREFIX};

use crate::error::{read, AuthError, FileKind, LineError, Problem};

/// What a rule grants (or, for `deny`, takes away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe and receive.
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither, whatever other rules grant.
    Deny,
}

impl Access {
    fn from_word(word: &str) -> Option<Access> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }

    fn grants(self, wanted: Wanted) -> bool {
        matches!(
            (self, wanted),
            (Access::Read | Access::ReadWrite, Wanted::Read)
                | (Access::Write | Access::ReadWrite, Wanted::Write)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Read,
    Write,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    /// For patterns, with `%c` / `%u` still in it.
    filter: String,
    /// Whether the filter holds `%c` or `%u` (patterns only).
    substitutes: bool,
}

/// How a rule's filter is tested against what the client asks for.
#[derive(Debug, Clone, Copy)]
enum Test<'a> {
    /// PUBLISH or a delivery: the rule's filter matches the topic name.
    Topic(&'a str),
    /// SUBSCRIBE: the rule's filter covers the requested filter.
    Filter(&'a str),
}

impl Test<'_> {
    fn passes(self, rule_filter: &str) -> bool {
        match self {
            Test::Topic(topic) => matches(rule_filter, topic),
            Test::Filter(filter) => covers(rule_filter, filter),
        }
    }
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// Rules for clients that gave no user name.
    anonymous: Vec<Rule>,
    /// Rules per user name (all `user <name>` sections of one name, merged).
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` rules, for every client.
    patterns: Vec<Rule>,
}

impl Acl {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Acl, Vec<AuthError>> {
        let text = read(FileKind::Acl, path).map_err(|error| vec![error])?;
        Acl::parse(&text, path).map_err(|errors| errors.into_iter().map(AuthError::from).collect())
    }

    /// Parses the text of an ACL file; `path` names it in errors. Every bad
    /// line is reported, in line order.
    pub fn parse(text: &str, path: &Path) -> Result<Acl, Vec<LineError>> {
        let mut acl = Acl::default();
        let mut errors = Vec::new();
        // `None` = the anonymous section (also where lines before any
        // `user` line go, as in Mosquitto).
        let mut section: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let mut fail = |problem| {
                errors.push(LineError {
                    path: path.to_path_buf(),
                    line: index + 1,
                    problem,
                });
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = match line.split_once(char::is_whitespace) {
                Some((word, rest)) => (word, rest.trim()),
                None => (line, ""),
            };
            match word {
                "user" => {
                    if rest.is_empty() {
                        fail(Problem::MissingUserName);
                    } else {
                        acl.users.entry(rest.to_owned()).or_default();
                        section = Some(rest.to_owned());
                    }
                }
                "anonymous" => {
                    if rest.is_empty() {
                        section = None;
                    } else {
                        fail(Problem::AnonymousArgument);
                    }
                }
                "topic" | "pattern" => {
                    let is_pattern = word == "pattern";
                    match parse_rule(rest, is_pattern) {
                        Ok(rule) if is_pattern => acl.patterns.push(rule),
                        Ok(rule) => match &section {
                            Some(user) => acl.users.entry(user.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        },
                        Err(problem) => fail(problem),
                    }
                }
                other => fail(Problem::UnknownDirective {
                    word: other.to_owned(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(acl)
        } else {
            Err(errors)
        }
    }

    /// Whether the client may publish to `topic` (a topic name).
    pub fn can_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.decide(client_id, username, Wanted::Write, Test::Topic(topic))
    }

    /// Whether the client may subscribe to `filter`: some rule granting read
    /// covers it (every topic it can match, that rule matches too) and no
    /// `deny` rule covers it. A `deny` rule that covers only part of the
    /// filter does not refuse the subscription; the topics it covers are
    /// then withheld from the client one by one ([`Acl::can_receive`]).
    ///
    /// For a shared subscription pass the filter without `$share/{group}/`.
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.decide(client_id, username, Wanted::Read, Test::Filter(filter))
    }

    /// Whether a message on `topic` may be delivered to the client
    /// (retained messages on subscribe, and live deliveries).
    pub fn can_receive(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.decide(client_id, username, Wanted::Read, Test::Topic(topic))
    }

    /// The evaluation order, in one place:
    /// 1. any applicable `deny` rule that passes the test refuses;
    /// 2. else any rule of the client's own section (its `user` section, or
    ///    the anonymous section) that grants the access and passes allows;
    /// 3. else any `pattern` that grants it and passes allows;
    /// 4. else refused.
    fn decide(
        &self,
        client_id: &str,
        username: Option<&str>,
        wanted: Wanted,
        test: Test<'_>,
    ) -> bool {
        let own: &[Rule] = match username {
            Some(user) => self.users.get(user).map(Vec::as_slice).unwrap_or_default(),
            None => &self.anonymous,
        };
        // One pass over each list, noting a passing deny and a passing
        // grant; a deny anywhere wins over every grant.
        let mut granted = false;
        for rule in own {
            if test.passes(&rule.filter) {
                if rule.access == Access::Deny {
                    return false;
                }
                granted |= rule.access.grants(wanted);
            }
        }
        for rule in &self.patterns {
            let Some(filter) = substitute(rule, client_id, username) else {
                continue;
            };
            if test.passes(&filter) {
                if rule.access == Access::Deny {
                    return false;
                }
                granted |= rule.access.grants(wanted);
            }
        }
        granted
    }

    /// Number of rules (all sections and patterns), for logs.
    pub fn rule_count(&self) -> usize {
        self.anonymous.len()
            + self.users.values().map(Vec::len).sum::<usize>()
            + self.patterns.len()
    }
}

/// `[access] filter` after `topic` / `pattern`. The access is optional
/// (`readwrite` when left out, as in Mosquitto); the filter is the rest of
/// the line, spaces included.
fn parse_rule(rest: &str, is_pattern: bool) -> Result<Rule, Problem> {
    let directive = if is_pattern { "pattern" } else { "topic" };
    let (access, filter) = match rest.split_once(char::is_whitespace) {
        Some((word, filter)) => match Access::from_word(word) {
            Some(access) => (access, filter.trim()),
            None => (Access::ReadWrite, rest),
        },
        // A lone access word is a rule with its filter missing, not a rule
        // for a topic named "read".
        None if Access::from_word(rest).is_some() => {
            return Err(Problem::MissingFilter { directive });
        }
        None => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err(Problem::MissingFilter { directive });
    }
    let substitutes = check_substitutions(filter, is_pattern)?;
    // Validate with the placeholders filled in, as they will be when used.
    let sample = filter.replace("%c", "c").replace("%u", "u");
    if sample.starts_with(SHARED_PREFIX) {
        return Err(Problem::InvalidFilter {
            filter: filter.to_owned(),
            reason: "write the filter without `$share/{group}/`: shared subscriptions are \
                     checked against their topic filter"
                .to_owned(),
        });
    }
    validate_topic_filter(&sample, &TopicLimits::default()).map_err(|error| {
        Problem::InvalidFilter {
            filter: filter.to_owned(),
            reason: error.to_string(),
        }
    })?;
    Ok(Rule {
        access,
        filter: filter.to_owned(),
        substitutes,
    })
}

/// Checks every `%` in a filter: `%c` and `%u` are the only escapes, and
/// only patterns substitute them. Returns whether there is any.
fn check_substitutions(filter: &str, is_pattern: bool) -> Result<bool, Problem> {
    let mut found = false;
    let mut rest = filter;
    while let Some(position) = rest.find('%') {
        let after = rest.get(position + 1..).unwrap_or_default();
        if !(after.starts_with('c') || after.starts_with('u')) {
            return Err(Problem::InvalidSubstitution {
                filter: filter.to_owned(),
                reason: "`%` must be followed by `c` (client id) or `u` (user name)",
            });
        }
        found = true;
        rest = after.get(1..).unwrap_or_default();
    }
    if found && !is_pattern {
        return Err(Problem::InvalidSubstitution {
            filter: filter.to_owned(),
            reason: "`%c` and `%u` are only substituted in `pattern` rules; \
                     use `pattern` instead of `topic`",
        });
    }
    Ok(found)
}

/// A pattern's filter for one client, or `None` when the pattern does not
/// apply to it: `%u` for a client without a user name, or a client id or
/// user name that is empty or holds `/`, `+` or `#` (substituted, it would
/// reach beyond its own level: client `a/b` must not get `devices/a/...`
/// rights, nor client `#` everybody's).
fn substitute<'a>(
    rule: &'a Rule,
    client_id: &str,
    username: Option<&str>,
) -> Option<std::borrow::Cow<'a, str>> {
    if !rule.substitutes {
        return Some(std::borrow::Cow::Borrowed(&rule.filter));
    }
    let safe = |value: &str| !value.is_empty() && !value.contains(['/', '+', '#']);
    let mut out = String::with_capacity(rule.filter.len() + client_id.len());
    let mut rest = rule.filter.as_str();
    while let Some(position) = rest.find('%') {
        out.push_str(rest.get(..position).unwrap_or_default());
        let after = rest.get(position + 1..).unwrap_or_default();
        if after.starts_with('c') {
            if !safe(client_id) {
                return None;
            }
            out.push_str(client_id);
        } else {
            let user = username.filter(|user| safe(user))?;
            out.push_str(user);
        }
        rest = after.get(1..).unwrap_or_default();
    }
    out.push_str(rest);
    Some(std::borrow::Cow::Owned(out))
}

/// Whether every topic that `filter` matches is matched by `rule` (both
/// valid topic filters).
///
/// Level by level: a rule's `#` covers whatever remains; a rule's `+` covers
/// one level of the filter (a name or `+`), never a `#`; a name covers only
/// the same name. The filter may end where the rule continues with a final
/// `#` (`a/#` matches `a`). A rule starting with a wildcard matches no topic
/// starting with `$`, so it does not cover a filter whose first level is a
/// `$` name.
///
/// It is exact except that it may answer "no" for a rule written
/// differently from an equivalent filter (`+/#` does cover `#`); it never
/// answers "yes" wrongly.
pub fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (rule_levels.next(), filter_levels.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(rule_level), Some(filter_level)) => {
                if filter_level == "+" || rule_level != filter_level {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Acl {
        Acl::parse(text, Path::new("acl")).unwrap_or_else(|errors| {
            panic!(
                "{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    fn problems(text: &str) -> Vec<(usize, Problem)> {
        Acl::parse(text, Path::new("acl"))
            .unwrap_err()
            .into_iter()
            .map(|error| (error.line, error.problem))
            .collect()
    }

    #[test]
    fn covers_table() {
        // (rule, requested filter, covered)
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/+", false),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/#", "a", true),
            ("a/#", "a/#", true),
            ("a/#", "a/b/+/#", true),
            ("a/#", "#", false),
            ("a/#", "+/b", false),
            ("a/#", "ab", false),
            ("+/b", "a/b", true),
            ("+/b", "+/b", true),
            ("+/b", "+/+", false),
            ("#", "#", true),
            ("#", "a/+/#", true),
            ("#", "+/x", true),
            // A leading wildcard does not match `$` topics, so it covers no
            // filter that can only match them.
            ("#", "$SYS/#", false),
            ("+/broker", "$SYS/broker", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            // Empty levels are levels.
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("/#", "/x", true),
            // Conservative: equivalent but spelled differently.
            ("+/#", "#", false),
        ];
        for (rule, filter, expected) in cases {
            assert_eq!(
                covers(rule, filter),
                expected,
                "covers({rule:?}, {filter:?})"
            );
        }
    }

    #[test]
    fn covers_agrees_with_matches_on_sample_topics() {
        // Whenever `covers` says yes, every sample topic the filter matches
        // must match the rule.
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "+/b", "+/+", "a/+/c", "$SYS/#", "/#", "a/b/#",
        ];
        let topics = [
            "a", "b", "a/b", "a/c", "b/b", "a/b/c", "a/x/c", "$SYS/x", "/x", "", "a/", "x/y/z",
        ];
        for rule in filters {
            for filter in filters {
                if !covers(rule, filter) {
                    continue;
                }
                for topic in topics {
                    if matches(filter, topic) {
                        assert!(
                            matches(rule, topic),
                            "covers({rule}, {filter}) but {rule} misses {topic}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sections_and_access_words() {
        let acl = parse(
            "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic write inbox/alice
topic read news/+
topic shared/rw

anonymous
topic write public/anon-drop

user bob
topic read bob/#
",
        );
        let alice = Some("alice");
        // Anonymous: the lines before the first `user` and after `anonymous`.
        assert!(acl.can_subscribe("c", None, "public/#"));
        assert!(acl.can_publish("c", None, "public/anon-drop"));
        assert!(!acl.can_publish("c", None, "public/x"));
        assert!(!acl.can_subscribe("c", alice, "public/#"));
        // alice
        assert!(acl.can_publish("c", alice, "alice/x/y"));
        assert!(acl.can_subscribe("c", alice, "alice/#"));
        assert!(acl.can_publish("c", alice, "inbox/alice"));
        assert!(!acl.can_subscribe("c", alice, "inbox/alice"));
        assert!(acl.can_subscribe("c", alice, "news/today"));
        assert!(!acl.can_publish("c", alice, "news/today"));
        assert!(acl.can_receive("c", alice, "news/today"));
        assert!(!acl.can_receive("c", alice, "news/today/late"));
        // No access word = readwrite.
        assert!(acl.can_publish("c", alice, "shared/rw"));
        assert!(acl.can_subscribe("c", alice, "shared/rw"));
        // Sections do not leak into each other; unknown users get nothing.
        assert!(!acl.can_subscribe("c", Some("bob"), "alice/#"));
        assert!(acl.can_subscribe("c", Some("bob"), "bob/x"));
        assert!(!acl.can_subscribe("c", Some("carol"), "public/#"));
        assert_eq!(acl.rule_count(), 7);
    }

    #[test]
    fn deny_wins_over_section_rules_and_patterns() {
        let acl = parse(
            "\
user alice
topic read sensors/#
topic deny sensors/secret/#
pattern readwrite devices/%c/#
pattern deny devices/+/firmware
",
        );
        let alice = Some("alice");
        assert!(acl.can_receive("c", alice, "sensors/kitchen"));
        assert!(!acl.can_receive("c", alice, "sensors/secret/x"));
        // The deny covers only part of `sensors/#`: the subscription is
        // allowed and the secret topics are withheld per message.
        assert!(acl.can_subscribe("c", alice, "sensors/#"));
        // A deny that covers the whole filter refuses it.
        assert!(!acl.can_subscribe("c", alice, "sensors/secret/#"));
        assert!(!acl.can_subscribe("c", alice, "sensors/secret/a"));
        // A deny pattern beats the allowing pattern.
        assert!(acl.can_publish("dev1", alice, "devices/dev1/state"));
        assert!(!acl.can_publish("dev1", alice, "devices/dev1/firmware"));
        assert!(!acl.can_receive("dev1", alice, "devices/dev1/firmware"));
    }

    #[test]
    fn client_id_and_user_name_substitution() {
        let acl = parse(
            "\
pattern readwrite devices/%c/#
pattern read users/%u/inbox/#
pattern write logs/%u/%c
",
        );
        assert!(acl.can_publish("dev1", None, "devices/dev1/state"));
        assert!(!acl.can_publish("dev1", None, "devices/dev2/state"));
        assert!(acl.can_subscribe("dev1", None, "devices/dev1/#"));
        assert!(!acl.can_subscribe("dev1", None, "devices/+/state"));
        assert!(acl.can_subscribe("x", Some("alice"), "users/alice/inbox/#"));
        assert!(!acl.can_subscribe("x", Some("alice"), "users/bob/inbox/#"));
        // %u does not apply without a user name.
        assert!(!acl.can_subscribe("x", None, "users//inbox/#"));
        assert!(acl.can_publish("pc", Some("alice"), "logs/alice/pc"));
        assert!(!acl.can_publish("pc", Some("alice"), "logs/alice/other"));
        // Values that would reach beyond their level do not substitute.
        for evil in ["a/b", "+", "#", "a+", ""] {
            assert!(
                !acl.can_publish(evil, None, &format!("devices/{evil}/x")),
                "client id {evil:?}"
            );
            assert!(!acl.can_subscribe(evil, None, "devices/#"), "{evil:?}");
        }
        assert!(!acl.can_receive("x", Some("a/b"), "users/a/b/inbox/1"));
    }

    #[test]
    fn dollar_topics_need_explicit_rules() {
        let acl = parse("user ops\ntopic read #\ntopic read $SYS/broker/#\n");
        let ops = Some("ops");
        assert!(acl.can_subscribe("c", ops, "#"));
        assert!(!acl.can_receive("c", ops, "$SYS/other"));
        assert!(acl.can_receive("c", ops, "$SYS/broker/uptime"));
        assert!(acl.can_subscribe("c", ops, "$SYS/broker/#"));
        assert!(!acl.can_subscribe("c", ops, "$SYS/#"));
    }

    #[test]
    fn an_empty_acl_denies_everything() {
        let acl = parse("# nothing yet\n");
        assert!(!acl.can_publish("c", None, "a"));
        assert!(!acl.can_subscribe("c", Some("u"), "a"));
        assert!(!acl.can_receive("c", Some("u"), "a"));
    }

    #[test]
    fn filters_keep_their_spaces() {
        let acl = parse("topic read  living room/lamp \n");
        assert!(acl.can_receive("c", None, "living room/lamp"));
    }

    #[test]
    fn the_readme_example_parses_and_means_what_it_says() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```text\n# Before any `user` line")
            .expect("the ACL example in the README");
        let block = readme.get(start + "```text\n".len()..).unwrap();
        let block = block.get(..block.find("```").unwrap()).unwrap();
        let acl = parse(block);
        assert!(acl.can_subscribe("c", None, "public/#"));
        assert!(acl.can_publish("c", Some("alice"), "alice/x"));
        assert!(acl.can_receive("c", Some("alice"), "sensors/a"));
        assert!(!acl.can_receive("c", Some("alice"), "sensors/secret/a"));
        assert!(acl.can_publish("dev1", None, "devices/dev1/state"));
    }

    #[test]
    fn errors_name_their_lines() {
        let all = problems(
            "\
topic read a
user
frobnicate x
topic read
topic deny a/#/b
anonymous now
topic read devices/%c
pattern read a/%x
topic read $share/g/a
pattern read devices/%c/#
",
        );
        let lines: Vec<usize> = all.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9], "{all:?}");
        assert_eq!(all[0].1, Problem::MissingUserName);
        assert_eq!(
            all[1].1,
            Problem::UnknownDirective {
                word: "frobnicate".into()
            }
        );
        assert_eq!(all[2].1, Problem::MissingFilter { directive: "topic" });
        assert!(matches!(&all[3].1, Problem::InvalidFilter { filter, .. } if filter == "a/#/b"));
        assert_eq!(all[4].1, Problem::AnonymousArgument);
        assert!(
            all[5].1.to_string().contains("use `pattern`"),
            "{}",
            all[5].1
        );
        assert!(matches!(all[6].1, Problem::InvalidSubstitution { .. }));
        assert!(all[7].1.to_string().contains("$share"), "{}", all[7].1);
        let error = &Acl::parse("\n\nuser\n", Path::new("/etc/acl")).unwrap_err()[0];
        assert_eq!(error.to_string(), "/etc/acl:3: `user` needs a user name");
    }
}
