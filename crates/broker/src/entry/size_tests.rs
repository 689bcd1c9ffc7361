//! What every session costs in memory before it does anything: the entry a
//! broker keeps per client, connected or not, idle or not. Prints the sizes
//! (`cargo test -p switchboard-broker sizes -- --nocapture`) and fails when
//! one grows past its bound, so that a field added in passing shows up as a
//! failing test rather than as a surprise in the idle-connection benchmark.

use std::mem::size_of;

use switchboard_session::{ClientParams, Session};

use super::*;

/// `(name, size, bound)` for the entry and the parts it is made of.
///
/// The bounds of the entry and the session lock's contents count the
/// attached connection's record ([`Attached`]) at whatever size it has: it
/// holds what a connection needs and has a bound of its own.
fn sizes() -> Vec<(&'static str, usize, usize)> {
    let attached = size_of::<Option<Attached>>();
    vec![
        ("SessionEntry", size_of::<SessionEntry>(), 248 + attached),
        // With the `Arc`'s two counters, 320 bytes: one of jemalloc's
        // allocation classes (the next is 384), which the binary uses.
        ("SessionEntry, absolute", size_of::<SessionEntry>(), 304),
        (
            "Mutex<SessionInner>",
            size_of::<Mutex<SessionInner>>(),
            120 + attached,
        ),
        ("SessionInner", size_of::<SessionInner>(), 112 + attached),
        ("Session", size_of::<Session>(), 56),
        (
            "Option<ClientParams>",
            size_of::<Option<ClientParams>>(),
            12,
        ),
        ("Option<Attached>", attached, 56),
        ("Mutex<Owner>", size_of::<Mutex<Owner>>(), 32),
        ("Notify", size_of::<Notify>(), 32),
        // Boxed, and only while there is something in it.
        ("Rare", size_of::<Rare>(), 48),
    ]
}

#[test]
fn an_idle_session_stays_small() {
    let mut too_big = Vec::new();
    for (name, size, bound) in sizes() {
        println!("{name}: {size} bytes (bound {bound})");
        if size > bound {
            too_big.push(format!("{name} is {size} bytes, bound {bound}"));
        }
    }
    assert!(too_big.is_empty(), "{too_big:?}");
}

#[test]
fn a_moment_keeps_its_instant() {
    let now = Instant::now();
    for instant in [
        now,
        now + std::time::Duration::from_secs(3_600),
        now.checked_sub(std::time::Duration::from_secs(5))
            .unwrap_or(now),
    ] {
        assert_eq!(Moment::of(instant).instant(), instant);
    }
    assert_eq!(size_of::<Moment>(), 8);
}
