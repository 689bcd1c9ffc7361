//! Storage interface (being written).
