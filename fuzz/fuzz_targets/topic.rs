//! Topic name and filter validation, the subscription index and the retained tree.
//! The checks are in `src/topic.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::topic::check(data);
});
