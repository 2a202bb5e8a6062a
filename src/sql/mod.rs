//! The SQL adapter: everything SQLite calls into. The `memories` virtual table's trait
//! methods ([`vtab`]), its planner ([`planner`]), the SQL functions ([`functions`],
//! [`lifecycle`]), the `vec_search` table-valued function ([`vec_search`]), context
//! assembly and links ([`context`]), history, snapshots, diff and restore ([`history`]) and the
//! loadable-extension entry point ([`entry`]). These decode SQL values and call
//! [`crate::table`], where the memory logic lives.

mod args;
pub(crate) mod branch;
pub(crate) mod context;
mod cursor;
#[cfg(feature = "ext")]
pub mod entry;
pub(crate) mod functions;
pub(crate) mod history;
pub(crate) mod lifecycle;
pub(crate) mod planner;
pub(crate) mod vec_search;
pub(crate) mod vtab;
