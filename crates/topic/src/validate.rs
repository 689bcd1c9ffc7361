//! Topic names and topic filters: validation, shared-subscription parsing and
//! the reference matcher.
//!
//! Statement ids are those of MQTT 5.0. MQTT 3.1.1 has the same rules under
//! other numbers: its [MQTT-4.7.1-1] is 5.0's [MQTT-4.7.0-1], its
//! [MQTT-4.7.1-2] is 5.0's [MQTT-4.7.1-1] and its [MQTT-4.7.1-3] is 5.0's
//! [MQTT-4.7.1-2]. Shared subscriptions (§4.8.2) exist only in 5.0; whether a
//! 3.1.1 client may use them is the broker's decision, not this module's.

/// The topic level separator.
pub(crate) const SEPARATOR: char = '/';
/// The single-level wildcard, legal only as a whole filter level.
pub(crate) const SINGLE_LEVEL: &str = "+";
/// The multi-level wildcard, legal only as the whole last filter level.
pub(crate) const MULTI_LEVEL: &str = "#";
/// The prefix that makes a filter a shared subscription (§4.8.2).
pub const SHARED_PREFIX: &str = "$share/";

/// The longest topic name or filter the protocol can carry: it travels as a
/// UTF-8 string with a two-byte length prefix, and [MQTT-4.7.3-3] says it
/// MUST NOT encode to more than 65,535 bytes.
pub const SPEC_MAX_TOPIC_LENGTH: usize = 65_535;

/// Default byte limit: the protocol's own limit, so that nothing a compliant
/// client may send is refused unless the operator asks for a smaller one.
pub const DEFAULT_MAX_TOPIC_LENGTH: usize = SPEC_MAX_TOPIC_LENGTH;

/// Default level limit. The protocol bounds only the length, which allows
/// 32,768 levels (`"/"` repeated); the work per match and the depth of the
/// subscription trie grow with the level count, so the server bounds it.
/// Real hierarchies use a handful of levels; 128 leaves room for generated
/// ones while keeping one hostile filter from costing more than a few
/// kilobytes of trie.
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 128;

/// Server limits applied on top of the protocol's rules.
///
/// Invariant relied on by callers: a name or filter accepted under some
/// limits has at most `max_levels` levels and at most
/// `min(max_length, 65,535)` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Longest accepted name or filter, in bytes. Values above 65,535 have no
    /// effect: [MQTT-4.7.3-3] applies regardless.
    pub max_length: usize,
    /// Most levels (separators plus one) a name or filter may have.
    pub max_levels: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        Self {
            max_length: DEFAULT_MAX_TOPIC_LENGTH,
            max_levels: DEFAULT_MAX_TOPIC_LEVELS,
        }
    }
}

/// Why a topic name or filter was refused. Each variant names the statement
/// it enforces, or says that it is a server limit; the broker maps them to
/// reason code 0x90 (Topic Name invalid) for PUBLISH and 0x8F (Topic Filter
/// invalid) for SUBSCRIBE and UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero length.
    #[error("[MQTT-4.7.3-1] a topic name or filter must be at least one character long")]
    Empty,
    /// Contains U+0000.
    #[error("[MQTT-4.7.3-2] a topic name or filter must not include the null character")]
    NullCharacter,
    /// Longer than the protocol allows.
    #[error(
        "[MQTT-4.7.3-3] a topic name or filter must not exceed 65535 bytes, this one has {length}"
    )]
    TooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// Within the protocol's limit but longer than the server accepts.
    #[error("topic is {length} bytes, more than the server limit of {limit}")]
    LengthLimit {
        /// Its length in bytes.
        length: usize,
        /// The configured [`TopicLimits::max_length`].
        limit: usize,
    },
    /// More levels than the server accepts.
    #[error("topic has more than the server limit of {limit} levels")]
    LevelLimit {
        /// The configured [`TopicLimits::max_levels`].
        limit: usize,
    },
    /// A topic name contains `+` or `#`.
    #[error("[MQTT-4.7.0-1] wildcard characters must not be used within a topic name")]
    WildcardInTopicName,
    /// A `#` that is not the whole last level of a filter.
    #[error("[MQTT-4.7.1-1] the multi-level wildcard must be alone in the last level of a filter")]
    MultiLevelWildcardMisplaced,
    /// A `+` that does not occupy a whole level.
    #[error("[MQTT-4.7.1-2] the single-level wildcard must occupy an entire level")]
    SingleLevelWildcardMisplaced,
    /// `$share/` followed by an empty ShareName.
    #[error(
        "[MQTT-4.8.2-1] a shared subscription's ShareName must be at least one character long"
    )]
    EmptyShareName,
    /// A ShareName containing `+` or `#`.
    #[error("[MQTT-4.8.2-2] a ShareName must not contain '+' or '#'")]
    InvalidShareName,
    /// A ShareName not followed by `/` and a non-empty topic filter.
    #[error("[MQTT-4.8.2-2] a ShareName must be followed by '/' and a topic filter")]
    MissingSharedFilter,
}

/// What a SUBSCRIBE or UNSUBSCRIBE filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind<'a> {
    /// An ordinary subscription; the filter as given.
    Plain(&'a str),
    /// `$share/{group}/{filter}` (§4.8.2): each matching message goes to one
    /// member of the group.
    Shared {
        /// The ShareName: non-empty, without `/`, `+` or `#`.
        group: &'a str,
        /// The topic filter after the ShareName, valid on its own.
        filter: &'a str,
    },
}

/// Checks the rules common to names and filters: length, null, level count.
/// O(n) in the length, and the length is checked first so a hostile input
/// costs at most one pass over 65,535 bytes.
fn check_common(text: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    let length = text.len();
    if length == 0 {
        return Err(TopicError::Empty);
    }
    if length > SPEC_MAX_TOPIC_LENGTH {
        return Err(TopicError::TooLong { length });
    }
    if length > limits.max_length {
        return Err(TopicError::LengthLimit {
            length,
            limit: limits.max_length,
        });
    }
    let mut levels = 1usize;
    for byte in text.bytes() {
        match byte {
            0 => return Err(TopicError::NullCharacter),
            b'/' => levels += 1,
            _ => {}
        }
    }
    if levels > limits.max_levels {
        return Err(TopicError::LevelLimit {
            limit: limits.max_levels,
        });
    }
    Ok(())
}

/// Validates a topic name as carried in PUBLISH or a will: non-empty
/// [MQTT-4.7.3-1], no U+0000 [MQTT-4.7.3-2], at most 65,535 bytes
/// [MQTT-4.7.3-3], no wildcard [MQTT-4.7.0-1], and within `limits`.
///
/// Names starting with `$` are valid here; whether a client may publish to
/// them is an authorization question for the broker. O(n) in the length.
pub fn validate_topic_name(name: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_common(name, limits)?;
    if name.bytes().any(|byte| byte == b'+' || byte == b'#') {
        return Err(TopicError::WildcardInTopicName);
    }
    Ok(())
}

/// Validates a topic filter's syntax: the common rules, `#` only as the whole
/// last level [MQTT-4.7.1-1], `+` only as a whole level [MQTT-4.7.1-2].
///
/// This does not interpret `$share/`: `"$share/g/a"` is a syntactically valid
/// filter. SUBSCRIBE and UNSUBSCRIBE should go through [`parse_filter`],
/// which does. O(n) in the length.
pub fn validate_topic_filter(filter: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_common(filter, limits)?;
    let mut levels = filter.split(SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != MULTI_LEVEL || !is_last) {
            return Err(TopicError::MultiLevelWildcardMisplaced);
        }
        if level.contains('+') && level != SINGLE_LEVEL {
            return Err(TopicError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

/// Validates a SUBSCRIBE or UNSUBSCRIBE filter and says whether it is a
/// shared subscription.
///
/// A filter starting with `$share/` is shared: the ShareName runs to the
/// next `/`, must be non-empty [MQTT-4.8.2-1], must not contain `+` or `#`
/// [MQTT-4.8.2-2] (it cannot contain `/` by construction) and must be
/// followed by `/` and a valid, non-empty filter [MQTT-4.8.2-2]. The length
/// limit applies to the whole string, the level limit to the inner filter
/// (the part that is stored in the index). Anything else is validated with
/// [`validate_topic_filter`]. The returned slices borrow from `filter`.
/// O(n) in the length.
pub fn parse_filter<'a>(
    filter: &'a str,
    limits: &TopicLimits,
) -> Result<FilterKind<'a>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARED_PREFIX) else {
        validate_topic_filter(filter, limits)?;
        return Ok(FilterKind::Plain(filter));
    };
    check_common(filter, limits).or_else(|error| match error {
        // The level limit is for the inner filter, checked below.
        TopicError::LevelLimit { .. } => Ok(()),
        other => Err(other),
    })?;
    let (group, inner) = rest.split_once(SEPARATOR).unwrap_or((rest, ""));
    if group.is_empty() {
        return Err(TopicError::EmptyShareName);
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::InvalidShareName);
    }
    if inner.is_empty() {
        return Err(TopicError::MissingSharedFilter);
    }
    validate_topic_filter(inner, limits)?;
    Ok(FilterKind::Shared {
        group,
        filter: inner,
    })
}

/// Whether `topic` matches the plain `filter`: the reference matcher.
///
/// `+` matches exactly one level (possibly empty), `#` matches the parent
/// level and any number of child levels, everything else compares
/// byte-for-byte with no normalization [MQTT-4.7.3-4]. A filter whose first
/// level is a wildcard does not match a topic starting with `$`
/// [MQTT-4.7.2-1].
///
/// Both arguments are expected to be valid (see [`validate_topic_filter`] and
/// [`validate_topic_name`]); on invalid input the answer is unspecified but
/// it never panics. A `$share/...` filter is compared literally: strip the
/// prefix with [`parse_filter`] first. O(n) in the shorter string, no
/// allocation. [`crate::TopicIndex`] gives the same answers and is tested
/// against this function.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split(SEPARATOR);
    let mut topic_levels = topic.split(SEPARATOR);
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` is the last filter level; it matches whatever remains,
            // including nothing ("sport/#" matches "sport").
            (Some(MULTI_LEVEL), _) => return true,
            (Some(SINGLE_LEVEL), Some(_)) => {}
            (Some(filter_level), Some(topic_level)) => {
                if filter_level != topic_level {
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

    fn limits() -> TopicLimits {
        TopicLimits::default()
    }

    #[test]
    fn topic_names() {
        let cases: &[(&str, Result<(), TopicError>, &str)] = &[
            ("sport/tennis/player1", Ok(()), "plain name"),
            (
                "/",
                Ok(()),
                "[MQTT-4.7.3-1] a lone separator is two empty levels",
            ),
            ("/finance", Ok(()), "leading separator"),
            ("sport/", Ok(()), "trailing separator"),
            ("a//b", Ok(()), "empty middle level"),
            (
                "$SYS/broker/uptime",
                Ok(()),
                "[MQTT-4.7.2-1] $-names are valid names",
            ),
            (" ", Ok(()), "a space is a character"),
            (
                "ACCOUNTS/accounts",
                Ok(()),
                "case is significant, not an error",
            ),
            ("", Err(TopicError::Empty), "[MQTT-4.7.3-1]"),
            ("a\0b", Err(TopicError::NullCharacter), "[MQTT-4.7.3-2]"),
            (
                "sport/+",
                Err(TopicError::WildcardInTopicName),
                "[MQTT-4.7.0-1]",
            ),
            (
                "sport/#",
                Err(TopicError::WildcardInTopicName),
                "[MQTT-4.7.0-1]",
            ),
            (
                "sport+",
                Err(TopicError::WildcardInTopicName),
                "[MQTT-4.7.0-1]",
            ),
            ("#", Err(TopicError::WildcardInTopicName), "[MQTT-4.7.0-1]"),
        ];
        for (name, expected, statement) in cases {
            assert_eq!(
                validate_topic_name(name, &limits()),
                *expected,
                "{statement}: {name:?}"
            );
        }
    }

    #[test]
    fn topic_filters() {
        let cases: &[(&str, Result<(), TopicError>, &str)] = &[
            ("sport/tennis/player1/#", Ok(()), "[MQTT-4.7.1-1]"),
            ("sport/#", Ok(()), "[MQTT-4.7.1-1]"),
            ("#", Ok(()), "[MQTT-4.7.1-1] on its own"),
            ("+", Ok(()), "[MQTT-4.7.1-2]"),
            ("+/tennis/#", Ok(()), "[MQTT-4.7.1-2] with [MQTT-4.7.1-1]"),
            ("sport/+/player1", Ok(()), "[MQTT-4.7.1-2]"),
            ("+/+", Ok(()), "[MQTT-4.7.1-2]"),
            ("/+", Ok(()), "[MQTT-4.7.1-2]"),
            ("/finance", Ok(()), "plain filter"),
            ("$SYS/#", Ok(()), "[MQTT-4.7.2-1]"),
            (
                "$share/g/a",
                Ok(()),
                "syntactically plain; parse_filter splits it",
            ),
            ("", Err(TopicError::Empty), "[MQTT-4.7.3-1]"),
            ("a/\0", Err(TopicError::NullCharacter), "[MQTT-4.7.3-2]"),
            (
                "sport/tennis#",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.7.1-1]",
            ),
            (
                "sport/tennis/#/ranking",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.7.1-1]",
            ),
            (
                "#/",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.7.1-1]",
            ),
            (
                "##",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.7.1-1]",
            ),
            (
                "sport+",
                Err(TopicError::SingleLevelWildcardMisplaced),
                "[MQTT-4.7.1-2]",
            ),
            (
                "sport/+x/a",
                Err(TopicError::SingleLevelWildcardMisplaced),
                "[MQTT-4.7.1-2]",
            ),
            (
                "++",
                Err(TopicError::SingleLevelWildcardMisplaced),
                "[MQTT-4.7.1-2]",
            ),
            (
                "+#",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.7.1-1]",
            ),
        ];
        for (filter, expected, statement) in cases {
            assert_eq!(
                validate_topic_filter(filter, &limits()),
                *expected,
                "{statement}: {filter:?}"
            );
        }
    }

    #[test]
    fn length_limits() {
        // [MQTT-4.7.3-3] 65,535 bytes is accepted, one more is not.
        let at_limit = "a".repeat(SPEC_MAX_TOPIC_LENGTH);
        let over = "a".repeat(SPEC_MAX_TOPIC_LENGTH + 1);
        assert_eq!(validate_topic_name(&at_limit, &limits()), Ok(()));
        assert_eq!(
            validate_topic_name(&over, &limits()),
            Err(TopicError::TooLong {
                length: SPEC_MAX_TOPIC_LENGTH + 1
            })
        );
        // A configured limit above the protocol's changes nothing.
        let generous = TopicLimits {
            max_length: usize::MAX,
            max_levels: usize::MAX,
        };
        assert_eq!(
            validate_topic_filter(&over, &generous),
            Err(TopicError::TooLong {
                length: SPEC_MAX_TOPIC_LENGTH + 1
            })
        );
        let small = TopicLimits {
            max_length: 4,
            max_levels: 3,
        };
        assert_eq!(validate_topic_name("abcd", &small), Ok(()));
        assert_eq!(
            validate_topic_name("abcde", &small),
            Err(TopicError::LengthLimit {
                length: 5,
                limit: 4
            })
        );
        assert_eq!(validate_topic_filter("a/+/", &small), Ok(()));
        assert_eq!(
            validate_topic_filter("///", &small),
            Err(TopicError::LevelLimit { limit: 3 })
        );
    }

    #[test]
    fn default_level_limit() {
        let deepest = vec!["a"; DEFAULT_MAX_TOPIC_LEVELS].join("/");
        let too_deep = vec!["a"; DEFAULT_MAX_TOPIC_LEVELS + 1].join("/");
        assert_eq!(validate_topic_name(&deepest, &limits()), Ok(()));
        assert_eq!(
            validate_topic_name(&too_deep, &limits()),
            Err(TopicError::LevelLimit {
                limit: DEFAULT_MAX_TOPIC_LEVELS
            })
        );
    }

    #[test]
    fn shared_filters() {
        let cases: &[(&str, Result<FilterKind<'_>, TopicError>, &str)] = &[
            ("sport/#", Ok(FilterKind::Plain("sport/#")), "not shared"),
            (
                "$share",
                Ok(FilterKind::Plain("$share")),
                "no prefix slash: plain",
            ),
            (
                "$sharex/g/a",
                Ok(FilterKind::Plain("$sharex/g/a")),
                "not the prefix",
            ),
            (
                "$share/consumer1/sport/tennis/+",
                Ok(FilterKind::Shared {
                    group: "consumer1",
                    filter: "sport/tennis/+",
                }),
                "[MQTT-4.8.2-1]",
            ),
            (
                "$share/g/#",
                Ok(FilterKind::Shared {
                    group: "g",
                    filter: "#",
                }),
                "[MQTT-4.8.2-2]",
            ),
            (
                "$share/g//finance",
                Ok(FilterKind::Shared {
                    group: "g",
                    filter: "/finance",
                }),
                "[MQTT-4.8.2-2] the inner filter may start with a separator",
            ),
            ("$share/", Err(TopicError::EmptyShareName), "[MQTT-4.8.2-1]"),
            (
                "$share//a",
                Err(TopicError::EmptyShareName),
                "[MQTT-4.8.2-1]",
            ),
            (
                "$share/g+/a",
                Err(TopicError::InvalidShareName),
                "[MQTT-4.8.2-2]",
            ),
            (
                "$share/#/a",
                Err(TopicError::InvalidShareName),
                "[MQTT-4.8.2-2]",
            ),
            (
                "$share/g",
                Err(TopicError::MissingSharedFilter),
                "[MQTT-4.8.2-2]",
            ),
            (
                "$share/g/",
                Err(TopicError::MissingSharedFilter),
                "[MQTT-4.8.2-2]",
            ),
            (
                "$share/g/a/#/b",
                Err(TopicError::MultiLevelWildcardMisplaced),
                "[MQTT-4.8.2-2] with [MQTT-4.7.1-1]",
            ),
            (
                "$share/g/a+",
                Err(TopicError::SingleLevelWildcardMisplaced),
                "[MQTT-4.8.2-2] with [MQTT-4.7.1-2]",
            ),
            (
                "$share/g/\0",
                Err(TopicError::NullCharacter),
                "[MQTT-4.7.3-2]",
            ),
        ];
        for (filter, expected, statement) in cases {
            assert_eq!(
                parse_filter(filter, &limits()),
                *expected,
                "{statement}: {filter:?}"
            );
        }
    }

    #[test]
    fn shared_filter_limits() {
        let small = TopicLimits {
            max_length: 16,
            max_levels: 2,
        };
        // The level limit applies to the inner filter only.
        assert_eq!(
            parse_filter("$share/g/a/b", &small),
            Ok(FilterKind::Shared {
                group: "g",
                filter: "a/b"
            })
        );
        assert_eq!(
            parse_filter("$share/g/a/b/c", &small),
            Err(TopicError::LevelLimit { limit: 2 })
        );
        // The length limit applies to the whole string.
        assert_eq!(
            parse_filter("$share/group/abcde", &small),
            Err(TopicError::LengthLimit {
                length: 18,
                limit: 16
            })
        );
    }

    #[test]
    fn matching_examples() {
        let cases: &[(&str, &str, bool, &str)] = &[
            // §4.7.1.2 multi-level wildcard examples.
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1",
                true,
                "[MQTT-4.7.1-1]",
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
                "[MQTT-4.7.1-1]",
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
                "[MQTT-4.7.1-1]",
            ),
            (
                "sport/#",
                "sport",
                true,
                "[MQTT-4.7.1-1] # matches the parent level",
            ),
            ("#", "sport/tennis", true, "[MQTT-4.7.1-1]"),
            ("#", "/", true, "[MQTT-4.7.1-1]"),
            ("sport/tennis/#", "sport/tennis", true, "[MQTT-4.7.1-1]"),
            ("sport/tennis/#", "sport/tennisx", false, "[MQTT-4.7.1-1]"),
            // §4.7.1.3 single-level wildcard examples.
            (
                "sport/tennis/+",
                "sport/tennis/player1",
                true,
                "[MQTT-4.7.1-2]",
            ),
            (
                "sport/tennis/+",
                "sport/tennis/player2",
                true,
                "[MQTT-4.7.1-2]",
            ),
            (
                "sport/tennis/+",
                "sport/tennis/player1/ranking",
                false,
                "[MQTT-4.7.1-2]",
            ),
            ("sport/+", "sport", false, "[MQTT-4.7.1-2] + needs a level"),
            (
                "sport/+",
                "sport/",
                true,
                "[MQTT-4.7.1-2] an empty level is a level",
            ),
            ("+", "sport", true, "[MQTT-4.7.1-2]"),
            (
                "+",
                "/finance",
                false,
                "[MQTT-4.7.1-2] /finance has two levels",
            ),
            ("+/+", "/finance", true, "[MQTT-4.7.1-2]"),
            ("/+", "/finance", true, "[MQTT-4.7.1-2]"),
            ("+/tennis/#", "sport/tennis/player1", true, "[MQTT-4.7.1-2]"),
            (
                "sport/+/player1",
                "sport/tennis/player1",
                true,
                "[MQTT-4.7.1-2]",
            ),
            ("+/#", "a", true, "[MQTT-4.7.1-1] with [MQTT-4.7.1-2]"),
            // §4.7.2 topics beginning with $.
            ("#", "$SYS/broker", false, "[MQTT-4.7.2-1]"),
            (
                "+/monitor/Clients",
                "$SYS/monitor/Clients",
                false,
                "[MQTT-4.7.2-1]",
            ),
            ("+", "$SYS", false, "[MQTT-4.7.2-1]"),
            ("$SYS/#", "$SYS/monitor/Clients", true, "[MQTT-4.7.2-1]"),
            (
                "$SYS/monitor/+",
                "$SYS/monitor/Clients",
                true,
                "[MQTT-4.7.2-1]",
            ),
            ("$SYS/#", "$SYS", true, "[MQTT-4.7.2-1]"),
            (
                "a/#",
                "a/$b",
                true,
                "[MQTT-4.7.2-1] only the first level is special",
            ),
            (
                "a/+",
                "a/$b",
                true,
                "[MQTT-4.7.2-1] only the first level is special",
            ),
            // §4.7.3 no normalization.
            (
                "ACCOUNTS",
                "Accounts",
                false,
                "[MQTT-4.7.3-4] case-sensitive",
            ),
            (
                "accounts/",
                "accounts",
                false,
                "[MQTT-4.7.3-4] trailing separator counts",
            ),
            (
                "/finance",
                "finance",
                false,
                "[MQTT-4.7.3-4] leading separator counts",
            ),
            ("a//b", "a/b", false, "[MQTT-4.7.3-4]"),
            (
                "caf\u{e9}",
                "cafe\u{301}",
                false,
                "[MQTT-4.7.3-4] no Unicode normalization",
            ),
            ("sport/tennis", "sport/tennis", true, "exact"),
            (
                "sport/tennis",
                "sport/tennis/x",
                false,
                "exact, topic longer",
            ),
            (
                "sport/tennis/x",
                "sport/tennis",
                false,
                "exact, filter longer",
            ),
        ];
        for (filter, topic, expected, statement) in cases {
            assert_eq!(
                matches(filter, topic),
                *expected,
                "{statement}: {filter:?} vs {topic:?}"
            );
        }
    }

    #[test]
    fn errors_name_their_statement() {
        assert!(TopicError::MultiLevelWildcardMisplaced
            .to_string()
            .starts_with("[MQTT-4.7.1-1]"));
        assert!(TopicError::EmptyShareName
            .to_string()
            .starts_with("[MQTT-4.8.2-1]"));
    }
}
