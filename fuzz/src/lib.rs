//! The checks run by the fuzz targets in `fuzz_targets/`, one module per
//! target. Each module is self-contained (it uses only the crate under test
//! and `bytes`) so that the workspace's tests can compile the very same file
//! with `#[path]` and replay the seed corpus and the regression inputs
//! through it on every `cargo test`, without a fuzzer:
//!
//! - `decode.rs`: `crates/codec/tests/corpus.rs`
//! - `topic.rs`: `crates/topic/tests/corpus.rs`
//! - `session.rs`: `crates/session/tests/corpus.rs`

pub mod decode;
pub mod session;
pub mod topic;
