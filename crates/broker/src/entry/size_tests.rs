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
        ("SessionEntry", size_of::<SessionEntry>(), 240 + attached),
        (
            "Mutex<SessionInner>",
            size_of::<Mutex<SessionInner>>(),
            112 + attached,
        ),
        ("SessionInner", size_of::<SessionInner>(), 104 + attached),
        ("Session", size_of::<Session>(), 56),
        (
            "Option<ClientParams>",
            size_of::<Option<ClientParams>>(),
            12,
        ),
        ("Option<Attached>", attached, 72),
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
