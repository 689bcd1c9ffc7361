//! A client's decoder, for MQTT 3.1, 3.1.1 and 5.0, on arbitrary bytes.
//! The checks are in `src/decode.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::decode::check_client(data);
});
