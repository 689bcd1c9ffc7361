//! The session state machine, driven by operations read from the input.
//! The checks are in `src/session.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::session::check(data);
});
