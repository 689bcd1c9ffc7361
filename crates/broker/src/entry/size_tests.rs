//! What every session costs in memory before it does anything: the entry a
//! broker keeps per client, connected or not, idle or not. Prints the sizes
//! (`cargo test -p switchboard-broker sizes -- --nocapture`) and fails when
//! one grows past its bound, so that a field added in passing shows up as a
//! failing test rather than as a surprise in the idle-connection benchmark.

use std::mem::size_of;

use switchboard_session::{ClientParams, DropCounts, Session, SessionLimits};

use super::*;

/// `(name, size, bound)` for the entry and the parts it is made of.
fn sizes() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("SessionEntry", size_of::<SessionEntry>(), 536),
        ("Mutex<SessionInner>", size_of::<Mutex<SessionInner>>(), 408),
        ("SessionInner", size_of::<SessionInner>(), 400),
        ("Session", size_of::<Session>(), 248),
        ("SessionLimits", size_of::<SessionLimits>(), 24),
        ("Option<ClientParams>", size_of::<Option<ClientParams>>(), 12),
        ("DropCounts", size_of::<DropCounts>(), 40),
        ("Option<Attached>", size_of::<Option<Attached>>(), 64),
        ("Mutex<Owner>", size_of::<Mutex<Owner>>(), 32),
        ("Notify", size_of::<Notify>(), 32),
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
