//! The memory table's logic, apart from SQLite's callbacks.

pub(crate) mod dedup;
