//! MQTT topics: validation of names and filters, the subscription index,
//! and the retained-message tree.
//!
//! - [`validate_topic_name`], [`validate_topic_filter`] and [`parse_filter`]
//!   check what a client sends (§4.7, and §4.8.2 for `$share/`), each error
//!   naming the statement it enforces; [`matches`](fn@matches) is the
//!   reference matcher.
//! - [`TopicIndex`] answers "who subscribed to this topic" with one walk of a
//!   trie over topic levels, into a reused [`Matches`] buffer. It stores
//!   compact session handles, never filter strings per match.
//! - [`RetainedTree`] answers "which retained messages match this filter".
//!
//! No I/O, no locks: the broker decides how the index is shared (the read
//! paths take `&self` and are safe to run concurrently). Nothing here
//! recurses or panics on hostile input; the limits in [`TopicLimits`] bound
//! what validation accepts.

mod arena;
mod index;
mod retained;
mod validate;

pub use index::{Matches, SharedMatch, TopicIndex};
pub use retained::{RetainedIter, RetainedTree};
pub use validate::{
    matches, parse_filter, validate_topic_filter, validate_topic_name, FilterKind, TopicError,
    TopicLimits, DEFAULT_MAX_TOPIC_LENGTH, DEFAULT_MAX_TOPIC_LEVELS, SHARED_PREFIX,
    SPEC_MAX_TOPIC_LENGTH,
};
