//! The `pub`, `sub` and `req` command-line tools.
