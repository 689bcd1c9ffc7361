//! The checks behind the `topic` fuzz target, also replayed over the seed
//! corpus by `crates/topic/tests/corpus.rs` on every `cargo test`.
//!
//! The input is read as text (invalid UTF-8 replaced by U+FFFD): the whole of
//! it, and then each line (at most [`MAX_LINES`]), serves as a topic name, a
//! topic filter, and a SUBSCRIBE filter (`$share/...` included). Checked:
//!
//! 1. Nothing panics, on valid input or not.
//! 2. `validate_topic_name`, `validate_topic_filter` and `parse_filter` agree
//!    with a plain reading of the rules (§4.7, §4.8.2), honour the limits
//!    they are given, and agree with each other (a valid name is a valid
//!    filter that matches itself; a shared filter splits into its parts and
//!    back).
//! 3. A `TopicIndex` holding the lines' filters (plain and shared, with
//!    repeated keys) returns from `matches_into` exactly what `matches` says
//!    for every valid name, before and after removing some; `insert` and
//!    `remove` return what a map would; emptied, it is back to one node.
//!    Invalid filters go into a second index, which must not panic and must
//!    empty out the same way.
//! 4. A `RetainedTree` of the valid names returns from `matching` exactly
//!    what `matches` says for every valid filter, and empties out the same
//!    way.
//!
//! No `unwrap` and no indexing: this file is also compiled into the
//! workspace's tests, under the workspace lints.

use std::collections::BTreeMap;

use switchboard_topic::{
    matches, parse_filter, validate_topic_filter, validate_topic_name, FilterKind, Matches,
    RetainedTree, TopicError, TopicIndex, TopicLimits, SHARED_PREFIX,
};

/// Lines beyond this are ignored: the index checks are quadratic.
pub const MAX_LINES: usize = 24;

/// Tight limits, so that the limit paths are reached with small inputs.
const TIGHT: TopicLimits = TopicLimits {
    max_length: 16,
    max_levels: 3,
};

/// The `topic` fuzz target.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_validation(&text);
    let lines: Vec<&str> = text.split('\n').take(MAX_LINES).collect();
    for line in &lines {
        check_validation(line);
    }
    for filter in &lines {
        for topic in &lines {
            // Any pair, valid or not: unspecified answer, but no panic.
            let _ = matches(filter, topic);
        }
    }
    check_index(&lines);
    check_retained(&lines);
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn check_validation(text: &str) {
    for limits in [TopicLimits::default(), TIGHT] {
        let name = validate_topic_name(text, &limits);
        let filter = validate_topic_filter(text, &limits);
        let parsed = parse_filter(text, &limits);

        assert_eq!(name.is_ok(), reference_name(text, &limits), "name {text:?}");
        assert_eq!(
            filter.is_ok(),
            reference_filter(text, &limits),
            "filter {text:?}"
        );
        if let Err(error) = name {
            check_error_cause(text, error);
        }
        if let Err(error) = filter {
            check_error_cause(text, error);
        }
        if name.is_ok() {
            assert!(filter.is_ok(), "valid name {text:?} is not a valid filter");
            assert!(matches(text, text), "{text:?} does not match itself");
        }
        match text.strip_prefix(SHARED_PREFIX) {
            None => assert_eq!(parsed, filter.map(|()| FilterKind::Plain(text))),
            Some(rest) => check_shared(text, rest, &limits, parsed),
        }
        for accepted in [name.is_ok(), filter.is_ok()] {
            if accepted {
                assert!(text.len() <= limits.max_length.min(65_535));
                assert!(levels(text) <= limits.max_levels);
            }
        }
    }
    // Whatever the tight limits accept, the default ones accept too.
    let default = TopicLimits::default();
    if validate_topic_name(text, &TIGHT).is_ok() {
        assert!(validate_topic_name(text, &default).is_ok());
    }
    if parse_filter(text, &TIGHT).is_ok() {
        assert!(parse_filter(text, &default).is_ok());
    }
}

/// `$share/{rest}`: valid exactly when the ShareName is non-empty and free
/// of wildcards, and a valid filter follows its `/` [MQTT-4.8.2-1],
/// [MQTT-4.8.2-2]; the length limit counts the whole string, the level limit
/// only the inner filter.
fn check_shared(
    text: &str,
    rest: &str,
    limits: &TopicLimits,
    parsed: Result<FilterKind<'_>, TopicError>,
) {
    let (group, inner) = rest.split_once('/').unwrap_or((rest, ""));
    let expected_ok = !group.is_empty()
        && !group.contains(['+', '#'])
        && !inner.is_empty()
        && !text.contains('\0')
        && text.len() <= limits.max_length.min(65_535)
        && reference_filter(inner, limits);
    assert_eq!(parsed.is_ok(), expected_ok, "shared filter {text:?}");
    if let Ok(kind) = parsed {
        assert_eq!(
            kind,
            FilterKind::Shared {
                group,
                filter: inner
            }
        );
        assert_eq!(format!("{SHARED_PREFIX}{group}/{inner}"), text);
    }
}

/// The cause an error names is really there.
fn check_error_cause(text: &str, error: TopicError) {
    let holds = match error {
        TopicError::Empty => text.is_empty(),
        TopicError::NullCharacter => text.contains('\0'),
        TopicError::TooLong { length } => length == text.len() && length > 65_535,
        TopicError::LengthLimit { length, limit } => length == text.len() && length > limit,
        TopicError::LevelLimit { limit } => levels(text) > limit,
        TopicError::WildcardInTopicName => text.contains(['+', '#']),
        TopicError::MultiLevelWildcardMisplaced => text.contains('#'),
        TopicError::SingleLevelWildcardMisplaced => text.contains('+'),
        TopicError::EmptyShareName
        | TopicError::InvalidShareName
        | TopicError::MissingSharedFilter => text.starts_with(SHARED_PREFIX),
    };
    assert!(holds, "{error:?} for {text:?}");
}

fn levels(text: &str) -> usize {
    text.split('/').count()
}

/// The rules common to names and filters, read straight from §4.7.3 and
/// the limits.
fn reference_common(text: &str, limits: &TopicLimits) -> bool {
    !text.is_empty()
        && text.len() <= 65_535
        && text.len() <= limits.max_length
        && !text.contains('\0')
        && levels(text) <= limits.max_levels
}

fn reference_name(text: &str, limits: &TopicLimits) -> bool {
    reference_common(text, limits) && !text.contains(['+', '#'])
}

/// Each level is `+`, or `#` as the last level, or free of both
/// [MQTT-4.7.1-1], [MQTT-4.7.1-2].
fn reference_filter(text: &str, limits: &TopicLimits) -> bool {
    let count = levels(text);
    reference_common(text, limits)
        && text.split('/').enumerate().all(|(index, level)| {
            level == "+" || (level == "#" && index + 1 == count) || !level.contains(['+', '#'])
        })
}

// ---------------------------------------------------------------------------
// The subscription index
// ---------------------------------------------------------------------------

/// The topics to match: every valid name among the lines, and for every
/// valid plain filter a name it matches and its parent.
fn topics_for(lines: &[&str], filters: &[String]) -> Vec<String> {
    let default = TopicLimits::default();
    let mut topics: Vec<String> = lines
        .iter()
        .filter(|line| validate_topic_name(line, &default).is_ok())
        .map(|line| (*line).to_owned())
        .collect();
    for filter in filters {
        let instance: Vec<&str> = filter
            .split('/')
            .map(|level| match level {
                "+" => "p",
                "#" => "h/i",
                other => other,
            })
            .collect();
        topics.push(instance.join("/"));
        if let Some(parent) = filter.strip_suffix("/#") {
            topics.push(parent.replace('+', "q"));
        }
    }
    topics.retain(|topic| validate_topic_name(topic, &default).is_ok());
    topics
}

type Plain = BTreeMap<(String, u8), u32>;
type Shared = BTreeMap<(String, String, u8), u32>;

fn check_index(lines: &[&str]) {
    let default = TopicLimits::default();
    let mut index: TopicIndex<u8, u32> = TopicIndex::new();
    let mut junk: TopicIndex<u8, u32> = TopicIndex::new();
    let mut plain = Plain::new();
    let mut shared = Shared::new();
    let mut junk_model = Plain::new();
    let mut filters = Vec::new();

    for (position, line) in lines.iter().enumerate() {
        let key = (position % 3) as u8;
        let value = position as u32;
        match parse_filter(line, &default) {
            Ok(FilterKind::Plain(filter)) => {
                let expected = plain.insert((filter.to_owned(), key), value);
                assert_eq!(index.insert(filter, key, value), expected);
                filters.push(filter.to_owned());
            }
            Ok(FilterKind::Shared { group, filter }) => {
                let expected = shared.insert((group.to_owned(), filter.to_owned(), key), value);
                assert_eq!(index.insert_shared(group, filter, key, value), expected);
                filters.push(filter.to_owned());
            }
            Err(_) => {
                // Stored and removed consistently even though invalid.
                let expected = junk_model.insert(((*line).to_owned(), key), value);
                assert_eq!(junk.insert(line, key, value), expected);
            }
        }
    }
    let topics = topics_for(lines, &filters);
    assert_eq!(index.len(), plain.len() + shared.len());
    compare_index(&index, &plain, &shared, &topics);

    // Remove every other subscription, and one that does not exist.
    let gone_plain: Vec<(String, u8)> = plain.keys().skip(1).step_by(2).cloned().collect();
    for (filter, key) in gone_plain {
        let expected = plain.remove(&(filter.clone(), key));
        assert_eq!(index.remove(&filter, key), expected);
        assert_eq!(index.remove(&filter, key), None, "removed twice");
    }
    let gone_shared: Vec<(String, String, u8)> =
        shared.keys().skip(1).step_by(2).cloned().collect();
    for (group, filter, key) in gone_shared {
        let expected = shared.remove(&(group.clone(), filter.clone(), key));
        assert_eq!(index.remove_shared(&group, &filter, key), expected);
    }
    assert_eq!(index.remove("never/subscribed", 9), None);
    assert_eq!(index.len(), plain.len() + shared.len());
    compare_index(&index, &plain, &shared, &topics);

    for ((filter, key), value) in std::mem::take(&mut plain) {
        assert_eq!(index.remove(&filter, key), Some(value));
    }
    for ((group, filter, key), value) in std::mem::take(&mut shared) {
        assert_eq!(index.remove_shared(&group, &filter, key), Some(value));
    }
    assert!(index.is_empty());
    assert_eq!(index.node_count(), 1, "emptied index keeps nodes");

    // The invalid filters: any topic, no panic; then empty out.
    let mut out = Matches::new();
    for line in lines {
        junk.matches_into(line, &mut out);
    }
    drop(out);
    for ((filter, key), value) in junk_model {
        assert_eq!(junk.remove(&filter, key), Some(value));
    }
    assert!(junk.is_empty());
    assert_eq!(junk.node_count(), 1, "emptied index keeps nodes");
}

fn compare_index(index: &TopicIndex<u8, u32>, plain: &Plain, shared: &Shared, topics: &[String]) {
    let mut out = Matches::new();
    for topic in topics {
        index.matches_into(topic, &mut out);

        let mut found: Vec<(u8, u32)> = out
            .plain()
            .iter()
            .map(|(key, value)| (*key, **value))
            .collect();
        found.sort_unstable();
        let mut expected: Vec<(u8, u32)> = plain
            .iter()
            .filter(|((filter, _), _)| matches(filter, topic))
            .map(|((_, key), value)| (*key, *value))
            .collect();
        expected.sort_unstable();
        assert_eq!(found, expected, "plain subscribers of {topic:?}");

        let mut found: Vec<(String, Vec<(u8, u32)>)> = Vec::new();
        for group in out.shared() {
            let mut members: Vec<(u8, u32)> = group.members().to_vec();
            members.sort_unstable();
            assert!(!members.is_empty(), "a shared group without members");
            let mut candidates: Vec<(u8, u32)> = group
                .candidates()
                .map(|(key, value)| (key, *value))
                .collect();
            candidates.sort_unstable();
            assert_eq!(candidates, members, "candidates are every member once");
            assert!(group.next_start() < members.len());
            found.push((group.group().to_owned(), members));
        }
        found.sort();
        let mut groups: BTreeMap<(&str, &str), Vec<(u8, u32)>> = BTreeMap::new();
        for ((group, filter, key), value) in shared {
            if matches(filter, topic) {
                groups
                    .entry((group, filter))
                    .or_default()
                    .push((*key, *value));
            }
        }
        let mut expected: Vec<(String, Vec<(u8, u32)>)> = groups
            .into_iter()
            .map(|((group, _), mut members)| {
                members.sort_unstable();
                (group.to_owned(), members)
            })
            .collect();
        expected.sort();
        assert_eq!(found, expected, "shared subscribers of {topic:?}");
    }
}

// ---------------------------------------------------------------------------
// The retained tree
// ---------------------------------------------------------------------------

fn check_retained(lines: &[&str]) {
    let default = TopicLimits::default();
    let mut tree: RetainedTree<u32> = RetainedTree::new();
    let mut model: BTreeMap<String, u32> = BTreeMap::new();
    let mut filters = Vec::new();
    for (position, line) in lines.iter().enumerate() {
        let value = position as u32;
        if validate_topic_name(line, &default).is_ok() {
            assert_eq!(
                tree.insert(line, value),
                model.insert((*line).to_owned(), value)
            );
        }
        if let Ok(FilterKind::Plain(filter) | FilterKind::Shared { filter, .. }) =
            parse_filter(line, &default)
        {
            filters.push(filter);
        }
    }
    compare_retained(&tree, &model, &filters);

    let gone: Vec<String> = model.keys().step_by(2).cloned().collect();
    for topic in gone {
        assert_eq!(tree.remove(&topic), model.remove(&topic));
        assert_eq!(tree.remove(&topic), None, "removed twice");
    }
    compare_retained(&tree, &model, &filters);

    // Invalid filters: unspecified answer, but no panic.
    for line in lines {
        let _ = tree.matching(line).count();
    }
    for (topic, value) in std::mem::take(&mut model) {
        assert_eq!(tree.remove(&topic), Some(value));
    }
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 1, "emptied tree keeps nodes");
}

fn compare_retained(tree: &RetainedTree<u32>, model: &BTreeMap<String, u32>, filters: &[&str]) {
    assert_eq!(tree.len(), model.len());
    for (topic, value) in model {
        assert_eq!(tree.get(topic), Some(value));
    }
    let mut all: Vec<(String, u32)> = tree
        .iter()
        .map(|(topic, value)| (topic.to_owned(), *value))
        .collect();
    all.sort();
    let expected: Vec<(String, u32)> = model
        .iter()
        .map(|(topic, value)| (topic.clone(), *value))
        .collect();
    assert_eq!(all, expected, "iter");
    for filter in filters {
        let mut found: Vec<(String, u32)> = tree
            .matching(filter)
            .map(|(topic, value)| (topic.to_owned(), *value))
            .collect();
        found.sort();
        let expected: Vec<(String, u32)> = model
            .iter()
            .filter(|(topic, _)| matches(filter, topic))
            .map(|(topic, value)| (topic.clone(), *value))
            .collect();
        assert_eq!(found, expected, "retained messages matching {filter:?}");
    }
}
