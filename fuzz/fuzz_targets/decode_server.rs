//! A server's decoder (CONNECT first, then that CONNECT's version) on arbitrary bytes.
//! The checks are in `src/decode.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::decode::check_server(data);
});
