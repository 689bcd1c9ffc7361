//! The retained-message tree: at most one value per topic name, found by
//! topic filter when a client subscribes.
//!
//! A trie over topic levels with exact children only (topic names have no
//! wildcards); the wildcards are in the filter being looked up. Each entry
//! keeps its full topic name next to the value, so visiting an entry needs
//! no string building and the visit can be an ordinary iterator: the broker
//! needs the name for the PUBLISH anyway, and can bound the number of
//! retained messages sent per SUBSCRIBE with `.take(n)`.

use std::collections::HashMap;

use crate::arena::{Arena, NodeId, ROOT};
use crate::validate::{MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL};

/// Collections at most this large are never shrunk (see `index.rs`).
const SHRINK_FLOOR: usize = 32;

/// A trie node. Invariant: every node but the root is reachable from its
/// parent through one `children` entry and has an entry or a child; empty
/// nodes are freed on removal. The root never holds an entry (every topic
/// has at least one level, so its entry lives in a child).
#[derive(Debug)]
struct RetainedNode<T> {
    parent: Option<NodeId>,
    children: HashMap<Box<str>, NodeId>,
    /// The full topic name and its value.
    entry: Option<(Box<str>, T)>,
}

impl<T> RetainedNode<T> {
    fn new(parent: Option<NodeId>) -> Self {
        Self {
            parent,
            children: HashMap::new(),
            entry: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.entry.is_none()
    }
}

/// Retained values keyed by topic name.
///
/// Names are expected to be valid ([`crate::validate_topic_name`]); `+` and
/// `#` in a name are ordinary characters here. No operation recurses, and
/// nodes left empty by [`remove`](Self::remove) are freed and their slots
/// reused, so memory follows the number of retained topics.
#[derive(Debug)]
pub struct RetainedTree<T> {
    nodes: Arena<RetainedNode<T>>,
    len: usize,
}

impl<T> Default for RetainedTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RetainedTree<T> {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            nodes: Arena::with_root(RetainedNode::new(None)),
            len: 0,
        }
    }

    /// Stores `value` for `topic`, returning the value it replaces.
    /// O(L) hash lookups for L levels, plus allocations for new levels and,
    /// for a new topic, one copy of the name.
    pub fn insert(&mut self, topic: &str, value: T) -> Option<T> {
        let mut id = ROOT;
        for level in topic.split(SEPARATOR) {
            let existing = self
                .nodes
                .get(id)
                .and_then(|node| node.children.get(level).copied());
            id = match existing {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc(RetainedNode::new(Some(id)));
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.children.insert(level.into(), child);
                    }
                    child
                }
            };
        }
        let node = self.nodes.get_mut(id)?;
        match &mut node.entry {
            Some((_, existing)) => Some(std::mem::replace(existing, value)),
            empty @ None => {
                *empty = Some((topic.into(), value));
                self.len += 1;
                None
            }
        }
    }

    /// Removes and returns the value for `topic`; nodes left empty are
    /// freed, from the last level towards the root. O(L).
    pub fn remove(&mut self, topic: &str) -> Option<T> {
        let mut id = self.locate(topic)?;
        let (_, value) = self.nodes.get_mut(id)?.entry.take()?;
        self.len -= 1;
        let mut levels = topic.rsplit(SEPARATOR);
        while id != ROOT {
            let Some(node) = self.nodes.get(id) else {
                break;
            };
            if !node.is_empty() {
                break;
            }
            let (Some(parent), Some(level)) = (node.parent, levels.next()) else {
                break;
            };
            self.nodes.free(id);
            if let Some(parent_node) = self.nodes.get_mut(parent) {
                parent_node.children.remove(level);
                let children = &mut parent_node.children;
                if children.capacity() > SHRINK_FLOOR && children.len() * 4 < children.capacity() {
                    children.shrink_to(children.len() * 2);
                }
            }
            id = parent;
        }
        Some(value)
    }

    /// The value retained for `topic`. O(L).
    pub fn get(&self, topic: &str) -> Option<&T> {
        let id = self.locate(topic)?;
        self.nodes.get(id)?.entry.as_ref().map(|(_, value)| value)
    }

    /// Number of retained topics. O(1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is retained. O(1).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of live trie nodes, root included; 1 when empty. O(1).
    pub fn node_count(&self) -> usize {
        self.nodes.live()
    }

    /// Every retained `(topic, value)` whose topic matches `filter`, as
    /// [`crate::matches`](fn@crate::matches) defines it: `+` is one level,
    /// `#` the parent and every level below, and a filter starting with `+`
    /// or `#` does not match topics starting with `$` [MQTT-4.7.2-1]. Order
    /// is unspecified.
    ///
    /// `filter` is a plain filter (strip `$share/{group}/` first), expected
    /// to be valid. Lazy: each step costs one hash lookup per literal level;
    /// a `+` or `#` visits the children of the nodes it covers. The iterator
    /// owns a small work list, its only allocation.
    pub fn matching<'a>(&'a self, filter: &'a str) -> RetainedIter<'a, T> {
        RetainedIter {
            tree: self,
            filter,
            stack: vec![Visit::Walk(ROOT, Some(0))],
        }
    }

    /// Every retained `(topic, value)`, `$` topics included. Order is
    /// unspecified. O(n) over the whole tree.
    pub fn iter(&self) -> RetainedIter<'_, T> {
        RetainedIter {
            tree: self,
            filter: "",
            stack: vec![Visit::Subtree(ROOT)],
        }
    }

    /// The node for `topic`, if the path exists.
    fn locate(&self, topic: &str) -> Option<NodeId> {
        let mut id = ROOT;
        for level in topic.split(SEPARATOR) {
            id = *self.nodes.get(id)?.children.get(level)?;
        }
        Some(id)
    }
}

impl<'a, T> IntoIterator for &'a RetainedTree<T> {
    type Item = (&'a str, &'a T);
    type IntoIter = RetainedIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Pending work of a [`RetainedIter`].
#[derive(Debug, Clone, Copy)]
enum Visit {
    /// Match the filter from this byte offset (or, when `None`, the filter
    /// is consumed and the node's own entry matches) against this node.
    Walk(NodeId, Option<usize>),
    /// Yield this node's entry and everything below it.
    Subtree(NodeId),
}

/// Iterator over retained entries: see [`RetainedTree::matching`] and
/// [`RetainedTree::iter`].
#[derive(Debug)]
pub struct RetainedIter<'a, T> {
    tree: &'a RetainedTree<T>,
    filter: &'a str,
    stack: Vec<Visit>,
}

impl<'a, T> Iterator for RetainedIter<'a, T> {
    type Item = (&'a str, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        let tree = self.tree;
        while let Some(visit) = self.stack.pop() {
            match visit {
                Visit::Subtree(id) => {
                    let Some(node) = tree.nodes.get(id) else {
                        continue;
                    };
                    self.stack
                        .extend(node.children.values().copied().map(Visit::Subtree));
                    if let Some((topic, value)) = &node.entry {
                        return Some((topic, value));
                    }
                }
                Visit::Walk(id, position) => {
                    let Some(node) = tree.nodes.get(id) else {
                        continue;
                    };
                    let Some(start) = position else {
                        if let Some((topic, value)) = &node.entry {
                            return Some((topic, value));
                        }
                        continue;
                    };
                    let rest = self.filter.get(start..).unwrap_or_default();
                    let (level, next) = match rest.split_once(SEPARATOR) {
                        Some((level, _)) => (level, Some(start + level.len() + 1)),
                        None => (rest, None),
                    };
                    let at_root = id == ROOT;
                    // [MQTT-4.7.2-1] a leading wildcard skips `$` levels.
                    let wildcard_may_enter = |key: &str| !(at_root && key.starts_with('$'));
                    match level {
                        MULTI_LEVEL if next.is_none() => {
                            if at_root {
                                self.stack.extend(
                                    node.children
                                        .iter()
                                        .filter(|(key, _)| wildcard_may_enter(key))
                                        .map(|(_, child)| Visit::Subtree(*child)),
                                );
                            } else {
                                // "sport/#" matches "sport" itself too.
                                self.stack.push(Visit::Subtree(id));
                            }
                        }
                        SINGLE_LEVEL => {
                            self.stack.extend(
                                node.children
                                    .iter()
                                    .filter(|(key, _)| wildcard_may_enter(key))
                                    .map(|(_, child)| Visit::Walk(*child, next)),
                            );
                        }
                        literal => {
                            if let Some(&child) = node.children.get(literal) {
                                self.stack.push(Visit::Walk(child, next));
                            }
                        }
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::matches;
    use proptest::prelude::*;

    fn sorted<'a>(entries: impl Iterator<Item = (&'a str, &'a u32)>) -> Vec<(String, u32)> {
        let mut entries: Vec<_> = entries
            .map(|(topic, value)| (topic.to_owned(), *value))
            .collect();
        entries.sort();
        entries
    }

    fn topics(filter: &str, tree: &RetainedTree<u32>) -> Vec<String> {
        sorted(tree.matching(filter))
            .into_iter()
            .map(|(topic, _)| topic)
            .collect()
    }

    fn sample() -> RetainedTree<u32> {
        let mut tree = RetainedTree::new();
        for (value, topic) in [
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player2",
            "/finance",
            "finance",
            "$SYS/monitor/Clients",
            "$SYS",
            "a/$b",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(tree.insert(topic, value as u32), None);
        }
        tree
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut tree = RetainedTree::new();
        assert!(tree.is_empty());
        assert_eq!(tree.insert("a/b", 1), None);
        assert_eq!(tree.insert("a/b", 2), Some(1));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.get("a/b"), Some(&2));
        assert_eq!(tree.get("a"), None);
        assert_eq!(tree.get("a/b/c"), None);
        assert_eq!(tree.remove("a"), None);
        assert_eq!(tree.remove("a/b"), Some(2));
        assert_eq!(tree.remove("a/b"), None);
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn prunes_empty_nodes() {
        let mut tree = RetainedTree::new();
        tree.insert("a/b/c", 1);
        tree.insert("a", 2);
        assert_eq!(tree.node_count(), 4);
        tree.remove("a/b/c");
        // "a" keeps its entry, "b" and "c" go.
        assert_eq!(tree.node_count(), 2);
        tree.remove("a");
        assert_eq!(tree.node_count(), 1);
        for round in 0..100 {
            let topic = format!("device/{round}/state");
            tree.insert(&topic, round);
            assert_eq!(tree.remove(&topic), Some(round));
        }
        assert_eq!(tree.node_count(), 1);
        assert!(tree.nodes.slots() <= 4);
    }

    #[test]
    fn spec_examples() {
        let tree = sample();
        // [MQTT-4.7.1-1] `#` matches the parent and every level below.
        assert_eq!(
            topics("sport/tennis/player1/#", &tree),
            ["sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(
            topics("sport/#", &tree),
            [
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player2"
            ]
        );
        // [MQTT-4.7.1-2] `+` is exactly one level, possibly empty.
        assert_eq!(
            topics("sport/tennis/+", &tree),
            ["sport/tennis/player1", "sport/tennis/player2"]
        );
        assert_eq!(topics("sport/+", &tree), ["sport/", "sport/tennis"]);
        assert_eq!(
            topics("+/+", &tree),
            ["/finance", "a/$b", "sport/", "sport/tennis"]
        );
        assert_eq!(topics("/+", &tree), ["/finance"]);
        assert_eq!(topics("+", &tree), ["finance", "sport"]);
        // [MQTT-4.7.2-1] leading wildcards do not reach `$` topics.
        assert!(!topics("#", &tree)
            .iter()
            .any(|topic| topic.starts_with('$')));
        assert_eq!(topics("#", &tree).len(), 9);
        assert_eq!(topics("+/monitor/Clients", &tree), Vec::<String>::new());
        assert_eq!(topics("$SYS/#", &tree), ["$SYS", "$SYS/monitor/Clients"]);
        assert_eq!(topics("$SYS/monitor/+", &tree), ["$SYS/monitor/Clients"]);
        assert_eq!(topics("a/+", &tree), ["a/$b"]);
        // Exact filters and [MQTT-4.7.3-4] no normalization.
        assert_eq!(topics("finance", &tree), ["finance"]);
        assert_eq!(topics("Finance", &tree), Vec::<String>::new());
        assert_eq!(topics("sport/tennis/player3", &tree), Vec::<String>::new());
    }

    #[test]
    fn iter_lists_everything() {
        let tree = sample();
        let all = sorted(tree.iter());
        assert_eq!(all.len(), tree.len());
        assert!(all.iter().any(|(topic, _)| topic == "$SYS"));
        assert_eq!(sorted((&tree).into_iter()), all);
        assert_eq!(tree.iter().count(), 11);
    }

    #[test]
    fn bounded_delivery_with_take() {
        let tree = sample();
        assert_eq!(tree.matching("sport/#").take(2).count(), 2);
    }

    #[test]
    fn deep_topics_do_not_recurse() {
        let mut tree = RetainedTree::new();
        let deep = vec!["a"; 100_000].join("/");
        tree.insert(&deep, 1);
        assert_eq!(tree.matching("#").count(), 1);
        assert_eq!(tree.matching(&deep).count(), 1);
        assert_eq!(tree.remove(&deep), Some(1));
        assert_eq!(tree.node_count(), 1);
        tree.insert(&deep, 1);
        drop(tree);
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$s"])
    }

    proptest! {
        /// `matching` yields exactly the retained topics the reference
        /// matcher accepts, each once.
        #[test]
        fn matching_agrees_with_reference(
            topics in prop::collection::vec(prop::collection::vec(level(), 1..5), 1..30),
            filter_levels in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "", "$s", "+"]), 0..5),
            hash in any::<bool>(),
        ) {
            let mut tree = RetainedTree::new();
            let mut expected_all = std::collections::BTreeSet::new();
            for (value, levels) in (0u32..).zip(&topics) {
                let topic = levels.join("/");
                tree.insert(&topic, value);
                expected_all.insert(topic);
            }
            let mut filter_levels = filter_levels;
            if hash || filter_levels.is_empty() {
                filter_levels.push("#");
            }
            let filter = filter_levels.join("/");
            let found: Vec<String> = sorted(tree.matching(&filter)).into_iter().map(|(topic, _)| topic).collect();
            let expected: Vec<String> = expected_all.iter().filter(|topic| matches(&filter, topic)).cloned().collect();
            prop_assert_eq!(found, expected);
            prop_assert_eq!(tree.len(), expected_all.len());
            for topic in &expected_all {
                prop_assert!(tree.remove(topic).is_some());
            }
            prop_assert_eq!(tree.node_count(), 1);
        }
    }
}
