//! The subscription index: which sessions want a message published to a
//! topic.
//!
//! A trie over topic levels. Each node has a map of exact children, a
//! dedicated `+` child, the subscribers whose filter ends at the node, and
//! the subscribers whose filter ends with `#` right after the node. A
//! publish walks the topic's levels once, following at each node the exact
//! child, the `+` child, and collecting the `#` subscribers; filters are
//! never turned back into strings and nothing is hashed twice.
//!
//! Topics starting with `$` are kept from leading wildcards by a rule rather
//! than a second root: at the root, when the topic's first level starts with
//! `$`, the `+` child and the `#` subscribers are skipped and only the exact
//! child is followed [MQTT-4.7.2-1]. The effect is the same as a separate
//! root for `$` levels, without a second tree to maintain.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::arena::{Arena, NodeId, ROOT};
use crate::validate::{MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL};

/// Above this many members a member list gets a key-to-position map, so that
/// insert and remove stay O(1) for filters with very many subscribers
/// (`#`, a popular topic, a large shared group).
const INDEXED_MEMBERS: usize = 16;

/// Below this many members the position map is dropped again. Lower than
/// [`INDEXED_MEMBERS`] so that a list hovering around the threshold does not
/// rebuild its map on every change.
const UNINDEXED_MEMBERS: usize = 8;

/// Collections at most this large are never shrunk: shrinking them would
/// save little and cost reallocation on the next insert.
const SHRINK_FLOOR: usize = 32;

/// Releases spare capacity once a collection has fallen to a quarter of it,
/// so that a burst of subscriptions does not pin memory after it is gone.
fn shrink_map<A: Eq + Hash, B>(map: &mut HashMap<A, B>) {
    if map.capacity() > SHRINK_FLOOR && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// See [`shrink_map`].
fn shrink_vec<T>(vec: &mut Vec<T>) {
    if vec.capacity() > SHRINK_FLOOR && vec.len() * 4 < vec.capacity() {
        vec.shrink_to(vec.len() * 2);
    }
}

/// One level of a filter, as the trie sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'f> {
    Literal(&'f str),
    SingleLevel,
    /// Only ever the last step: a `#` elsewhere is treated as a literal,
    /// identically by insert and remove, so an invalid filter is stored
    /// and removed consistently instead of panicking.
    MultiLevel,
}

fn steps(filter: &str) -> impl Iterator<Item = Step<'_>> {
    let mut levels = filter.split(SEPARATOR).peekable();
    std::iter::from_fn(move || {
        let level = levels.next()?;
        let is_last = levels.peek().is_none();
        Some(match level {
            SINGLE_LEVEL => Step::SingleLevel,
            MULTI_LEVEL if is_last => Step::MultiLevel,
            literal => Step::Literal(literal),
        })
    })
}

/// Where a filter's subscribers live in its last node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    /// The filter ends at the node.
    Exact,
    /// The filter is the node's levels followed by `#`.
    MultiLevel,
}

/// The members of one filter (or one shared group of a filter).
///
/// Invariant: each key appears at most once in `entries`; when `positions`
/// is `Some`, it maps every key in `entries` to its index and nothing else.
/// Entries are contiguous so that matching copies them with one pass.
#[derive(Debug)]
struct Members<K, V> {
    entries: Vec<(K, V)>,
    positions: Option<HashMap<K, usize>>,
}

impl<K, V> Default for Members<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            positions: None,
        }
    }
}

impl<K: Copy + Eq + Hash, V> Members<K, V> {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// O(1) with a position map, O(n ≤ 16) without.
    fn position(&self, key: &K) -> Option<usize> {
        match &self.positions {
            Some(positions) => positions.get(key).copied(),
            None => self.entries.iter().position(|(other, _)| other == key),
        }
    }

    /// Inserts or replaces; returns the replaced value. Amortized O(1).
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(index) = self.position(&key) {
            if let Some((_, existing)) = self.entries.get_mut(index) {
                return Some(std::mem::replace(existing, value));
            }
        }
        self.entries.push((key, value));
        let index = self.entries.len() - 1;
        match &mut self.positions {
            Some(positions) => {
                positions.insert(key, index);
            }
            None if self.entries.len() > INDEXED_MEMBERS => {
                let positions = self
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(index, (key, _))| (*key, index))
                    .collect();
                self.positions = Some(positions);
            }
            None => {}
        }
        None
    }

    /// Removes `key` by swapping the last entry into its place (so member
    /// order is not stable). Amortized O(1).
    fn remove(&mut self, key: &K) -> Option<V> {
        let index = self.position(key)?;
        if index >= self.entries.len() {
            return None;
        }
        let (_, value) = self.entries.swap_remove(index);
        if let Some(positions) = &mut self.positions {
            positions.remove(key);
            if let Some((moved, _)) = self.entries.get(index) {
                positions.insert(*moved, index);
            }
            if self.entries.len() < UNINDEXED_MEMBERS {
                self.positions = None;
            } else {
                shrink_map(positions);
            }
        }
        shrink_vec(&mut self.entries);
        Some(value)
    }
}

/// The members of one shared subscription `$share/{name}/{filter}`.
#[derive(Debug)]
struct Group<K, V> {
    members: Members<K, V>,
    /// Round-robin position, advanced by [`SharedMatch::next_start`]. Atomic
    /// so that publishers holding only `&TopicIndex` (a read lock) can take
    /// turns without a write lock or a cursor map kept by the caller.
    cursor: AtomicUsize,
}

impl<K, V> Default for Group<K, V> {
    fn default() -> Self {
        Self {
            members: Members::default(),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// Everyone whose filter ends at one place in the trie.
///
/// Invariant: stored only while non-empty, and every group in `shared` has
/// at least one member.
#[derive(Debug)]
struct Subscribers<K, V> {
    plain: Members<K, V>,
    shared: HashMap<Box<str>, Group<K, V>>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Self {
            plain: Members::default(),
            shared: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash, V> Subscribers<K, V> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
}

/// A trie node. Invariant: every node but the root is reachable from its
/// parent through exactly one edge (a `children` entry or `single_level`),
/// and is non-empty in the sense of [`Node::is_empty`]; empty nodes are
/// freed by [`TopicIndex::prune`].
#[derive(Debug)]
struct Node<K, V> {
    parent: Option<NodeId>,
    children: HashMap<Box<str>, NodeId>,
    /// The child for a `+` level.
    single_level: Option<NodeId>,
    /// Filters ending at this node.
    exact: Option<Box<Subscribers<K, V>>>,
    /// Filters ending with `#` after this node's levels.
    multi_level: Option<Box<Subscribers<K, V>>>,
}

impl<K, V> Node<K, V> {
    fn new(parent: Option<NodeId>) -> Self {
        Self {
            parent,
            children: HashMap::new(),
            single_level: None,
            exact: None,
            multi_level: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.single_level.is_none()
            && self.exact.is_none()
            && self.multi_level.is_none()
    }

    #[cfg(test)]
    fn terminal(&self, terminal: Terminal) -> Option<&Subscribers<K, V>> {
        match terminal {
            Terminal::Exact => self.exact.as_deref(),
            Terminal::MultiLevel => self.multi_level.as_deref(),
        }
    }

    fn terminal_mut(&mut self, terminal: Terminal) -> &mut Option<Box<Subscribers<K, V>>> {
        match terminal {
            Terminal::Exact => &mut self.exact,
            Terminal::MultiLevel => &mut self.multi_level,
        }
    }
}

/// The subscription index: topic filters to subscriber keys and values.
///
/// `K` is a compact session handle (`Copy + Eq + Hash`, e.g. a slot number);
/// `V` is what the broker needs per subscription (options and identifier).
/// One `(filter, key)` pair holds one value; a key may hold any number of
/// filters, and [`matches_into`](Self::matches_into) reports every matching
/// one (the broker merges overlapping subscriptions of one session). Shared
/// subscriptions are kept per `(group, filter)`, apart from plain ones.
///
/// Filters are expected to be valid ([`crate::parse_filter`]); nothing here
/// panics on invalid ones, and a `#` that is not the last level is stored as
/// a literal level.
///
/// No operation recurses, so a deep filter cannot exhaust the stack. Empty
/// nodes are freed on removal and their slots reused, so memory follows the
/// number of live subscriptions, not the history of churn. `&self` methods
/// may run concurrently (the round-robin cursors are atomic), so the broker
/// can match under a read lock.
#[derive(Debug)]
pub struct TopicIndex<K, V> {
    nodes: Arena<Node<K, V>>,
    /// Plain subscriptions plus shared memberships.
    len: usize,
}

impl<K: Copy + Eq + Hash, V> Default for TopicIndex<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash, V> TopicIndex<K, V> {
    /// An empty index: one root node, no subscriptions.
    pub fn new() -> Self {
        Self {
            nodes: Arena::with_root(Node::new(None)),
            len: 0,
        }
    }

    /// Subscribes `key` to the plain `filter`, replacing the value if the
    /// pair exists. Returns the previous value: `Some` means the
    /// subscription already existed, which the broker needs for Retain
    /// Handling 1 (send retained messages only for a new subscription).
    ///
    /// O(L) hash lookups for L filter levels, plus one allocation per new
    /// trie node and level string.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (id, terminal) = self.locate_or_create(filter);
        let slot = self.nodes.get_mut(id)?.terminal_mut(terminal);
        let previous = slot
            .get_or_insert_with(Box::default)
            .plain
            .insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Unsubscribes `key` from the plain `filter` and returns its value, or
    /// `None` if there was no such subscription. Nodes left empty are freed,
    /// from the filter's last level towards the root.
    ///
    /// O(L) hash lookups for L filter levels.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        let (id, terminal) = self.locate(filter)?;
        let slot = self.nodes.get_mut(id)?.terminal_mut(terminal);
        let subscribers = slot.as_mut()?;
        let previous = subscribers.plain.remove(&key)?;
        if subscribers.is_empty() {
            *slot = None;
            self.prune(id, filter, terminal);
        }
        self.len -= 1;
        Some(previous)
    }

    /// Adds `key` to the shared subscription `$share/{group}/{filter}`,
    /// replacing its value if it is already a member. Returns the previous
    /// value. `group` and `filter` are the parts returned by
    /// [`crate::parse_filter`].
    ///
    /// O(L) hash lookups for L filter levels, plus one for the group.
    pub fn insert_shared(&mut self, group: &str, filter: &str, key: K, value: V) -> Option<V> {
        let (id, terminal) = self.locate_or_create(filter);
        let slot = self.nodes.get_mut(id)?.terminal_mut(terminal);
        let subscribers = slot.get_or_insert_with(Box::default);
        if !subscribers.shared.contains_key(group) {
            subscribers.shared.insert(group.into(), Group::default());
        }
        let previous = subscribers
            .shared
            .get_mut(group)?
            .members
            .insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes `key` from the shared subscription `$share/{group}/{filter}`
    /// and returns its value. A group left without members is dropped, and
    /// so are nodes left empty.
    ///
    /// O(L) hash lookups for L filter levels, plus one for the group.
    pub fn remove_shared(&mut self, group: &str, filter: &str, key: K) -> Option<V> {
        let (id, terminal) = self.locate(filter)?;
        let slot = self.nodes.get_mut(id)?.terminal_mut(terminal);
        let subscribers = slot.as_mut()?;
        let members = &mut subscribers.shared.get_mut(group)?.members;
        let previous = members.remove(&key)?;
        if members.is_empty() {
            subscribers.shared.remove(group);
            shrink_map(&mut subscribers.shared);
        }
        if subscribers.is_empty() {
            *slot = None;
            self.prune(id, filter, terminal);
        }
        self.len -= 1;
        Some(previous)
    }

    /// Collects every subscription matching the topic name `topic` into
    /// `out`, which is cleared first.
    ///
    /// `out` receives each matching plain subscription as `(key, &value)`,
    /// once per matching filter (a key subscribed with two overlapping
    /// filters appears twice, with each value), and each matching shared
    /// subscription once per `(group, filter)`. Order is unspecified.
    ///
    /// `topic` is expected to be a valid topic name; a `+` or `#` in it is
    /// an ordinary character here. A topic whose first level starts with `$`
    /// is not matched by filters starting with `+` or `#` [MQTT-4.7.2-1].
    ///
    /// Cost: one hash lookup of a level per visited node, where the visited
    /// nodes are the trie paths matching a prefix of the topic (at most
    /// L + 1 with no `+` filters), plus the size of the result. Allocates
    /// nothing once `out`'s buffers have grown to the largest result seen;
    /// reuse `out` across calls (see [`Matches::recycle`]).
    pub fn matches_into<'a>(&'a self, topic: &str, out: &mut Matches<'a, K, V>) {
        out.clear();
        out.stack.push((ROOT, Some(0)));
        while let Some((id, position)) = out.stack.pop() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let Some(start) = position else {
                // All levels consumed: filters ending here match, and so do
                // `#` filters ending here ("sport/#" matches "sport").
                out.collect(node.exact.as_deref());
                out.collect(node.multi_level.as_deref());
                continue;
            };
            let rest = topic.get(start..).unwrap_or_default();
            let (level, next) = match rest.split_once(SEPARATOR) {
                Some((level, _)) => (level, Some(start + level.len() + 1)),
                None => (rest, None),
            };
            // [MQTT-4.7.2-1] the root is visited only for the first level.
            let wildcards_apply = !(id == ROOT && level.starts_with('$'));
            if wildcards_apply {
                out.collect(node.multi_level.as_deref());
                if let Some(child) = node.single_level {
                    out.stack.push((child, next));
                }
            }
            if let Some(&child) = node.children.get(level) {
                out.stack.push((child, next));
            }
        }
    }

    /// Number of subscriptions: plain `(filter, key)` pairs plus shared
    /// group memberships. O(1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions. O(1).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of live trie nodes, root included; 1 when empty. For memory
    /// metrics: pruning keeps it proportional to the distinct filter
    /// prefixes in use. O(1).
    pub fn node_count(&self) -> usize {
        self.nodes.live()
    }

    /// The node holding `filter`'s subscribers, if the path exists.
    fn locate(&self, filter: &str) -> Option<(NodeId, Terminal)> {
        let mut id = ROOT;
        for step in steps(filter) {
            let node = self.nodes.get(id)?;
            id = match step {
                Step::MultiLevel => return Some((id, Terminal::MultiLevel)),
                Step::SingleLevel => node.single_level?,
                Step::Literal(level) => *node.children.get(level)?,
            };
        }
        Some((id, Terminal::Exact))
    }

    /// Like [`Self::locate`], creating missing nodes on the way.
    fn locate_or_create(&mut self, filter: &str) -> (NodeId, Terminal) {
        let mut id = ROOT;
        for step in steps(filter) {
            let existing = match step {
                Step::MultiLevel => return (id, Terminal::MultiLevel),
                Step::SingleLevel => self.nodes.get(id).and_then(|node| node.single_level),
                Step::Literal(level) => self
                    .nodes
                    .get(id)
                    .and_then(|node| node.children.get(level).copied()),
            };
            id = match existing {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc(Node::new(Some(id)));
                    if let Some(node) = self.nodes.get_mut(id) {
                        match step {
                            Step::SingleLevel => node.single_level = Some(child),
                            Step::Literal(level) => {
                                node.children.insert(level.into(), child);
                            }
                            Step::MultiLevel => {}
                        }
                    }
                    child
                }
            };
        }
        (id, Terminal::Exact)
    }

    /// Frees `id` and its ancestors while they are empty. `filter` is the
    /// filter whose removal emptied `id`: its levels, read backwards, name
    /// the edge from each parent. O(L).
    fn prune(&mut self, mut id: NodeId, filter: &str, terminal: Terminal) {
        let mut levels = filter.rsplit(SEPARATOR);
        if terminal == Terminal::MultiLevel {
            // The `#` is a slot of `id`, not an edge.
            levels.next();
        }
        while id != ROOT {
            let Some(node) = self.nodes.get(id) else {
                return;
            };
            if !node.is_empty() {
                return;
            }
            let (Some(parent), Some(level)) = (node.parent, levels.next()) else {
                return;
            };
            self.nodes.free(id);
            if let Some(parent_node) = self.nodes.get_mut(parent) {
                if level == SINGLE_LEVEL {
                    parent_node.single_level = None;
                } else {
                    parent_node.children.remove(level);
                    shrink_map(&mut parent_node.children);
                }
            }
            id = parent;
        }
    }

    /// The value of a plain subscription, for tests.
    #[cfg(test)]
    fn get(&self, filter: &str, key: K) -> Option<&V> {
        let (id, terminal) = self.locate(filter)?;
        let subscribers = self.nodes.get(id)?.terminal(terminal)?;
        let index = subscribers.plain.position(&key)?;
        subscribers.plain.entries.get(index).map(|(_, value)| value)
    }
}

/// The result of [`TopicIndex::matches_into`], and the reusable buffers it
/// is built in.
///
/// Keep one per publishing task and pass it to every call: its vectors keep
/// their capacity, so matching stops allocating once they have grown. The
/// lifetime ties the borrowed values to one borrow of the index; to carry
/// the buffers to the next borrow (the next read-lock guard), call
/// [`Matches::recycle`].
#[derive(Debug)]
pub struct Matches<'a, K, V> {
    plain: Vec<(K, &'a V)>,
    shared: Vec<SharedMatch<'a, K, V>>,
    /// Traversal work list: (node, byte offset of the next topic level, or
    /// `None` when every level is consumed). Empty between calls.
    stack: Vec<(NodeId, Option<usize>)>,
}

impl<K, V> Default for Matches<'_, K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, K, V> Matches<'a, K, V> {
    /// Empty buffers; nothing is allocated until the first match.
    pub fn new() -> Self {
        Self {
            plain: Vec::new(),
            shared: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// Matching plain subscriptions, one `(key, value)` per matching
    /// filter. A key appears more than once when several of its filters
    /// match.
    pub fn plain(&self) -> &[(K, &'a V)] {
        &self.plain
    }

    /// Matching shared subscriptions, one per `(group, filter)`.
    pub fn shared(&self) -> &[SharedMatch<'a, K, V>] {
        &self.shared
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }

    /// Empties the result, keeping the capacity.
    pub fn clear(&mut self) {
        self.plain.clear();
        self.shared.clear();
        self.stack.clear();
    }

    /// Empties the result and rebinds the buffers to another borrow of the
    /// index, keeping their allocations, so that a task can reuse one
    /// `Matches` across read-lock guards:
    ///
    /// ```
    /// # use switchboard_topic::{Matches, TopicIndex};
    /// # let index: TopicIndex<u32, ()> = TopicIndex::new();
    /// let mut scratch: Matches<'static, u32, ()> = Matches::new();
    /// for topic in ["a", "b"] {
    ///     let mut matches = scratch.recycle();
    ///     index.matches_into(topic, &mut matches); // under a read lock
    ///     // ... deliver ...
    ///     scratch = matches.recycle();
    /// }
    /// ```
    ///
    /// The vectors are converted with an in-place `collect`, which the
    /// standard library performs without reallocating when the element
    /// layout is unchanged, as it is here (only the lifetime differs).
    pub fn recycle<'b>(self) -> Matches<'b, K, V> {
        Matches {
            plain: rebind(self.plain),
            shared: rebind(self.shared),
            stack: rebind(self.stack),
        }
    }

    fn collect(&mut self, subscribers: Option<&'a Subscribers<K, V>>)
    where
        K: Copy,
    {
        let Some(subscribers) = subscribers else {
            return;
        };
        self.plain.extend(
            subscribers
                .plain
                .entries
                .iter()
                .map(|(key, value)| (*key, value)),
        );
        self.shared
            .extend(subscribers.shared.iter().map(|(name, group)| SharedMatch {
                group: name,
                members: &group.members.entries,
                cursor: &group.cursor,
            }));
    }
}

/// Empties `vec` and reuses its allocation for a vector of `B`.
fn rebind<A, B>(vec: Vec<A>) -> Vec<B> {
    vec.into_iter().filter_map(|_| None).collect()
}

/// One shared subscription `$share/{group}/{filter}` that matched: the
/// broker sends the message to one of its members.
///
/// The round-robin cursor lives in the index (one atomic per group), so
/// publishers need only `&TopicIndex`; concurrent publishers each advance
/// it, so consecutive messages start at consecutive members. The rotation
/// is fair over time but not exact while membership changes (removal swaps
/// the last member into the freed place).
#[derive(Debug)]
pub struct SharedMatch<'a, K, V> {
    group: &'a str,
    members: &'a [(K, V)],
    cursor: &'a AtomicUsize,
}

impl<K, V> Clone for SharedMatch<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for SharedMatch<'_, K, V> {}

impl<'a, K: Copy, V> SharedMatch<'a, K, V> {
    /// The ShareName. Two matches may carry the same name when the group
    /// subscribed with two different filters that both match; they are
    /// separate shared subscriptions and each gets the message.
    pub fn group(&self) -> &'a str {
        self.group
    }

    /// The members with their values; never empty. Order is arbitrary.
    pub fn members(&self) -> &'a [(K, V)] {
        self.members
    }

    /// Advances the group's cursor and returns the index in
    /// [`members`](Self::members) whose turn it is. O(1), one atomic
    /// increment.
    pub fn next_start(&self) -> usize {
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        turn.checked_rem(self.members.len()).unwrap_or(0)
    }

    /// Advances the cursor (see [`next_start`](Self::next_start)) and yields
    /// every member exactly once, starting with the one whose turn it is and
    /// wrapping around. The broker delivers to the first candidate that can
    /// take the message (connected, queue not full) and stops, so a slow or
    /// offline member is skipped rather than losing the message.
    pub fn candidates(&self) -> impl Iterator<Item = (K, &'a V)> + 'a {
        let members = self.members;
        let (before, after) = members
            .split_at_checked(self.next_start())
            .unwrap_or((members, &[]));
        after.iter().chain(before).map(|(key, value)| (*key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::matches;
    use proptest::prelude::*;

    type Index = TopicIndex<u32, &'static str>;

    /// Sorted plain matches, for comparison.
    fn plain(index: &Index, topic: &str) -> Vec<(u32, &'static str)> {
        let mut out = Matches::new();
        index.matches_into(topic, &mut out);
        let mut found: Vec<_> = out
            .plain()
            .iter()
            .map(|(key, value)| (*key, **value))
            .collect();
        found.sort_unstable();
        found
    }

    /// Sorted shared matches as (group, sorted member keys).
    fn shared(index: &Index, topic: &str) -> Vec<(String, Vec<u32>)> {
        let mut out = Matches::new();
        index.matches_into(topic, &mut out);
        let mut found: Vec<_> = out
            .shared()
            .iter()
            .map(|group| {
                let mut keys: Vec<u32> = group.members().iter().map(|(key, _)| *key).collect();
                keys.sort_unstable();
                (group.group().to_owned(), keys)
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn shareable_between_threads() {
        // The broker matches under a read lock from many tasks at once.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TopicIndex<u32, u64>>();
        assert_send_sync::<Matches<'static, u32, u64>>();
        let mut index: TopicIndex<u32, u64> = TopicIndex::new();
        index.insert_shared("g", "a", 1, 0);
        index.insert_shared("g", "a", 2, 0);
        let firsts: Vec<u32> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Matches::new();
                        index.matches_into("a", &mut out);
                        out.shared()[0].candidates().next().unwrap().0
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap())
                .collect()
        });
        // Four turns over two members: each member starts twice.
        assert_eq!(firsts.iter().filter(|key| **key == 1).count(), 2);
    }

    #[test]
    fn insert_replace_remove() {
        let mut index = Index::new();
        assert!(index.is_empty());
        assert_eq!(index.insert("sport/tennis", 1, "qos0"), None);
        assert_eq!(index.len(), 1);
        // Replacing reports the previous value (Retain Handling 1).
        assert_eq!(index.insert("sport/tennis", 1, "qos1"), Some("qos0"));
        assert_eq!(index.len(), 1);
        assert_eq!(index.get("sport/tennis", 1), Some(&"qos1"));
        assert_eq!(plain(&index, "sport/tennis"), vec![(1, "qos1")]);
        assert_eq!(index.remove("sport/tennis", 2), None);
        assert_eq!(index.remove("sport/other", 1), None);
        assert_eq!(index.remove("sport/tennis", 1), Some("qos1"));
        assert_eq!(index.remove("sport/tennis", 1), None);
        assert!(index.is_empty());
        assert_eq!(plain(&index, "sport/tennis"), vec![]);
    }

    #[test]
    fn prunes_empty_nodes() {
        let mut index = Index::new();
        index.insert("a/b/c", 1, "x");
        index.insert("a/+/c/#", 2, "x");
        index.insert("a/b", 3, "x");
        index.insert_shared("g", "a/b/c/d", 4, "x");
        // Root; a, b, c, d; the `+` node and the c under it.
        assert_eq!(index.node_count(), 1 + 4 + 2);
        index.remove("a/b/c", 1);
        // "a/b/c" is still the parent of "d".
        assert_eq!(index.node_count(), 1 + 4 + 2);
        index.remove_shared("g", "a/b/c/d", 4);
        // d and then c go; b still holds "a/b".
        assert_eq!(index.node_count(), 1 + 2 + 2);
        index.remove("a/+/c/#", 2);
        assert_eq!(index.node_count(), 1 + 2);
        index.remove("a/b", 3);
        assert_eq!(index.node_count(), 1);
        assert!(index.is_empty());
    }

    #[test]
    fn churn_does_not_grow_memory() {
        let mut index = Index::new();
        for round in 0..50u32 {
            for key in 0..20u32 {
                let filter = format!("client/{}/cmd/+", round * 100 + key);
                index.insert(&filter, key, "x");
            }
            for key in 0..20u32 {
                let filter = format!("client/{}/cmd/+", round * 100 + key);
                assert_eq!(index.remove(&filter, key), Some("x"));
            }
        }
        assert_eq!(index.node_count(), 1);
        // One round needs 1 + 1 + 20 * 3 nodes; the slots never exceed it.
        assert!(index.nodes.slots() <= 62, "{}", index.nodes.slots());
    }

    #[test]
    fn overlapping_filters_of_one_key() {
        // The index reports every matching filter; the broker merges them
        // into one delivery per session.
        let mut index = Index::new();
        index.insert("sport/tennis/player1", 7, "exact");
        index.insert("sport/tennis/+", 7, "plus");
        index.insert("sport/#", 7, "hash");
        index.insert("#", 7, "all");
        index.insert("sport/tennis/player2", 7, "other");
        assert_eq!(
            plain(&index, "sport/tennis/player1"),
            vec![(7, "all"), (7, "exact"), (7, "hash"), (7, "plus")]
        );
    }

    #[test]
    fn spec_examples_through_the_index() {
        let cases: &[(&str, &str, bool, &str)] = &[
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
            ("sport/#", "sport", true, "[MQTT-4.7.1-1]"),
            (
                "sport/tennis/+",
                "sport/tennis/player1",
                true,
                "[MQTT-4.7.1-2]",
            ),
            (
                "sport/tennis/+",
                "sport/tennis/player1/ranking",
                false,
                "[MQTT-4.7.1-2]",
            ),
            ("sport/+", "sport", false, "[MQTT-4.7.1-2]"),
            ("sport/+", "sport/", true, "[MQTT-4.7.1-2]"),
            ("+/+", "/finance", true, "[MQTT-4.7.1-2]"),
            ("/+", "/finance", true, "[MQTT-4.7.1-2]"),
            ("+", "/finance", false, "[MQTT-4.7.1-2]"),
            ("#", "$SYS/broker", false, "[MQTT-4.7.2-1]"),
            (
                "+/monitor/Clients",
                "$SYS/monitor/Clients",
                false,
                "[MQTT-4.7.2-1]",
            ),
            ("$SYS/#", "$SYS/monitor/Clients", true, "[MQTT-4.7.2-1]"),
            (
                "$SYS/monitor/+",
                "$SYS/monitor/Clients",
                true,
                "[MQTT-4.7.2-1]",
            ),
            ("+/$x", "a/$x", true, "[MQTT-4.7.2-1] only the first level"),
            ("ACCOUNTS", "accounts", false, "[MQTT-4.7.3-4]"),
        ];
        for (filter, topic, expected, statement) in cases {
            let mut index = Index::new();
            index.insert(filter, 1, "x");
            index.insert_shared("g", filter, 2, "y");
            let found = !plain(&index, topic).is_empty();
            assert_eq!(found, *expected, "{statement}: {filter:?} vs {topic:?}");
            let found_shared = !shared(&index, topic).is_empty();
            assert_eq!(
                found_shared, *expected,
                "shared {statement}: {filter:?} vs {topic:?}"
            );
        }
    }

    #[test]
    fn shared_groups() {
        let mut index = Index::new();
        assert_eq!(index.insert_shared("g1", "sport/+", 1, "a"), None);
        assert_eq!(index.insert_shared("g1", "sport/+", 2, "b"), None);
        assert_eq!(index.insert_shared("g1", "sport/+", 2, "c"), Some("b"));
        assert_eq!(index.insert_shared("g2", "sport/+", 3, "d"), None);
        assert_eq!(index.insert_shared("g1", "sport/#", 1, "e"), None);
        // A plain subscription on the same filter is separate.
        index.insert("sport/+", 1, "plain");
        assert_eq!(index.len(), 5);
        assert_eq!(
            shared(&index, "sport/tennis"),
            vec![
                ("g1".to_owned(), vec![1]),
                ("g1".to_owned(), vec![1, 2]),
                ("g2".to_owned(), vec![3]),
            ]
        );
        assert_eq!(plain(&index, "sport/tennis"), vec![(1, "plain")]);
        assert_eq!(index.remove_shared("g1", "sport/+", 3), None);
        assert_eq!(index.remove_shared("g3", "sport/+", 1), None);
        assert_eq!(index.remove_shared("g1", "sport/+", 1), Some("a"));
        assert_eq!(index.remove_shared("g1", "sport/+", 2), Some("c"));
        assert_eq!(
            shared(&index, "sport/tennis"),
            vec![("g1".to_owned(), vec![1]), ("g2".to_owned(), vec![3])]
        );
        index.remove_shared("g2", "sport/+", 3);
        index.remove_shared("g1", "sport/#", 1);
        index.remove("sport/+", 1);
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn round_robin_with_fallback() {
        let mut index = Index::new();
        for key in 0..3 {
            index.insert_shared("workers", "jobs/#", key, "v");
        }
        let mut out = Matches::new();
        index.matches_into("jobs/1", &mut out);
        let [group] = out.shared() else {
            panic!("one group expected")
        };
        // Each call starts at the next member and lists all of them once.
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let order: Vec<u32> = group.candidates().map(|(key, _)| key).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
            firsts.push(order[0]);
        }
        assert_eq!(firsts[0..3], firsts[3..6]);
        let mut distinct = firsts[0..3].to_vec();
        distinct.sort_unstable();
        assert_eq!(distinct, vec![0, 1, 2]);
        // The cursor is per group and survives across matches.
        let first = group.members()[group.next_start()].0;
        let mut again = Matches::new();
        index.matches_into("jobs/2", &mut again);
        let next = again.shared()[0].candidates().next().map(|(key, _)| key);
        assert_ne!(Some(first), next);
    }

    #[test]
    fn many_members_use_the_position_map() {
        let mut index = Index::new();
        for key in 0..100 {
            index.insert("#", key, "v");
        }
        assert_eq!(index.insert("#", 50, "w"), Some("v"));
        for key in (0..100).filter(|key| key % 3 != 0) {
            assert_eq!(
                index.remove("#", key),
                Some(if key == 50 { "w" } else { "v" })
            );
        }
        let keys: Vec<u32> = plain(&index, "a").into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            (0..100).filter(|key| key % 3 == 0).collect::<Vec<_>>()
        );
        for key in (0..100).filter(|key| key % 3 == 0) {
            assert_eq!(index.remove("#", key), Some("v"));
        }
        assert!(index.is_empty());
    }

    #[test]
    fn invalid_filters_do_not_panic() {
        let mut index = Index::new();
        // A non-final `#` is stored as a literal level, consistently.
        index.insert("a/#/b", 1, "x");
        assert_eq!(plain(&index, "a/#/b"), vec![(1, "x")]);
        assert_eq!(plain(&index, "a/z/b"), vec![]);
        assert_eq!(index.remove("a/#/b", 1), Some("x"));
        index.insert("", 2, "y");
        assert_eq!(plain(&index, ""), vec![(2, "y")]);
        assert_eq!(index.remove("", 2), Some("y"));
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn deep_filters_do_not_recurse() {
        let mut index = Index::new();
        let deep = vec!["a"; 100_000].join("/");
        index.insert(&deep, 1, "x");
        assert_eq!(plain(&index, &deep), vec![(1, "x")]);
        assert_eq!(index.remove(&deep, 1), Some("x"));
        assert_eq!(index.node_count(), 1);
        index.insert(&deep, 1, "x");
        drop(index);
    }

    #[test]
    fn matching_reuses_buffers() {
        let mut index = Index::new();
        for key in 0..50 {
            index.insert("a/+", key, "v");
            index.insert_shared("g", "a/#", key, "v");
        }
        let mut out = Matches::new();
        index.matches_into("a/b", &mut out);
        assert_eq!(out.plain().len(), 50);
        let plain_buffer = out.plain.as_ptr();
        let shared_buffer = out.shared.as_ptr();
        index.matches_into("a/c", &mut out);
        assert_eq!(out.plain().len(), 50);
        assert_eq!(out.plain.as_ptr(), plain_buffer);
        assert_eq!(out.shared.as_ptr(), shared_buffer);
        let capacity = out.plain.capacity();
        let recycled: Matches<'static, u32, &str> = out.recycle();
        assert!(recycled.is_empty());
        assert_eq!(recycled.plain.capacity(), capacity);
        assert_eq!(
            recycled.plain.as_ptr().cast::<u8>(),
            plain_buffer.cast::<u8>()
        );
    }

    /// Levels drawn from a small alphabet so that filters and topics
    /// collide often; includes empty and `$` levels.
    fn topic_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$s"])
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(topic_level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$s", "+"]);
        (prop::collection::vec(level, 0..5), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
    }

    proptest! {
        /// The trie agrees with the reference matcher, for plain and shared
        /// subscriptions, before and after removing some of them; removing
        /// everything leaves only the root.
        #[test]
        fn index_agrees_with_reference(
            filters in prop::collection::vec((filter(), 0u8..3), 1..40),
            topics in prop::collection::vec(topic(), 1..20),
            removed in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut index: TopicIndex<u32, u32> = TopicIndex::new();
            let mut live = Vec::new();
            for (key, (filter, group)) in (0u32..).zip(&filters) {
                let group = format!("g{group}");
                prop_assert_eq!(index.insert(filter, key, key), None);
                prop_assert_eq!(index.insert_shared(&group, filter, key, key), None);
                live.push((key, filter.clone(), group));
            }
            let check = |index: &TopicIndex<u32, u32>, live: &[(u32, String, String)]| -> Result<(), TestCaseError> {
                let mut out = Matches::new();
                for topic in &topics {
                    index.matches_into(topic, &mut out);
                    let mut found: Vec<u32> = out.plain().iter().map(|(key, value)| {
                        assert_eq!(key, *value);
                        *key
                    }).collect();
                    found.sort_unstable();
                    let mut expected: Vec<u32> = live.iter()
                        .filter(|(_, filter, _)| matches(filter, topic))
                        .map(|(key, _, _)| *key)
                        .collect();
                    expected.sort_unstable();
                    prop_assert_eq!(&found, &expected, "plain, topic {:?}", topic);

                    let mut found_shared: Vec<(String, Vec<u32>)> = out.shared().iter().map(|group| {
                        let mut keys: Vec<u32> = group.members().iter().map(|(key, _)| *key).collect();
                        keys.sort_unstable();
                        (group.group().to_owned(), keys)
                    }).collect();
                    found_shared.sort();
                    let mut groups: std::collections::BTreeMap<(String, String), Vec<u32>> = Default::default();
                    for (key, filter, group) in live {
                        if matches(filter, topic) {
                            groups.entry((group.clone(), filter.clone())).or_default().push(*key);
                        }
                    }
                    let mut expected_shared: Vec<(String, Vec<u32>)> = groups.into_iter().map(|((group, _), mut keys)| {
                        keys.sort_unstable();
                        (group, keys)
                    }).collect();
                    expected_shared.sort();
                    prop_assert_eq!(&found_shared, &expected_shared, "shared, topic {:?}", topic);
                }
                Ok(())
            };
            check(&index, &live)?;
            prop_assert_eq!(index.len(), live.len() * 2);

            let (gone, kept): (Vec<_>, Vec<_>) = live.into_iter().zip(&removed).partition(|(_, remove)| **remove);
            for ((key, filter, group), _) in &gone {
                prop_assert_eq!(index.remove(filter, *key), Some(*key));
                prop_assert_eq!(index.remove_shared(group, filter, *key), Some(*key));
            }
            let kept: Vec<_> = kept.into_iter().map(|(entry, _)| entry).collect();
            check(&index, &kept)?;
            prop_assert_eq!(index.len(), kept.len() * 2);

            for (key, filter, group) in &kept {
                prop_assert_eq!(index.remove(filter, *key), Some(*key));
                prop_assert_eq!(index.remove_shared(group, filter, *key), Some(*key));
            }
            prop_assert!(index.is_empty());
            prop_assert_eq!(index.node_count(), 1);
        }
    }
}
