//! A table's history as SQL ([`crate::store::history`], [`crate::table::history`]):
//!
//! * `subcog_version(table)` -> INTEGER: the current version (0 before any change);
//! * `subcog_snapshot(table, name)` -> INTEGER: names the current version `name` and
//!   returns it; `subcog_snapshot_drop(table, name)` -> 1 (an unknown name is an error);
//! * `subcog_snapshots(table)`: table-valued, `(name, version, created_at)`;
//! * `subcog_history(table, id)`: table-valued, `(version, time, change, id, before,
//!   after)`, every recorded change of memory `id`, oldest first (`change`: `insert`,
//!   `update`, `delete`, `merge`, `restore`; `before`/`after`: the row as JSON, NULL when
//!   absent);
//! * `subcog_diff(table, from [, to])`: table-valued, `(id, change, before, after)`, the
//!   memories whose row differs between two versions (`change`: `added`, `removed`,
//!   `changed`; `to` defaults to the current version);
//! * `subcog_restore(table, snapshot_or_version)` -> INTEGER: brings the table back to
//!   that version in the statement's transaction, through the table's own write path
//!   (`INSERT INTO t(t) VALUES ('restore:<version>')`), and returns how many memories'
//!   rows it changed.
//!
//! A version argument is a snapshot name (TEXT), a version (INTEGER) or a time in ms since
//! the Unix epoch (INTEGER >= 10^12). `table` is `name` or `schema.name`.

use std::ffi::{CStr, c_int};

use rusqlite::Connection;
use rusqlite::functions::{Context as FnContext, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::vtab::Module;

use super::args::target;
use super::context::{Spec, Tvf, connection, int_arg, table_arg, text_arg};
use crate::error::{Error, Result};
use crate::names::quote;
use crate::row::now_ms;
use crate::store::Store;
use crate::table::history::{self, Target};

/// Longest snapshot name accepted, in bytes.
const MAX_NAME: usize = 256;

/// Registers the four scalar functions and the three table-valued functions on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_function_v2` / `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let read = FunctionFlags::SQLITE_UTF8;
    let write = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("subcog_version", 1, read, |ctx| Ok(version(ctx)?))?;
    conn.create_scalar_function("subcog_snapshot", 2, write, |ctx| Ok(snapshot(ctx)?))?;
    conn.create_scalar_function("subcog_snapshot_drop", 2, write, |ctx| {
        Ok(snapshot_drop(ctx)?)
    })?;
    conn.create_scalar_function("subcog_restore", 2, write, |ctx| Ok(restore(ctx)?))?;
    const SNAPSHOTS: Module<Tvf<Snapshots>> = Module::eponymous_only_module();
    const HISTORY: Module<Tvf<History>> = Module::eponymous_only_module();
    const DIFF: Module<Tvf<Diff>> = Module::eponymous_only_module();
    conn.create_module(c"subcog_snapshots", &SNAPSHOTS, None)?;
    conn.create_module(c"subcog_history", &HISTORY, None)?;
    conn.create_module(c"subcog_diff", &DIFF, None)?;
    Ok(())
}

/// The store of the `table` argument `v` on `conn` (not owned), for `func`.
fn store_of(conn: &Connection, func: &str, v: ValueRef<'_>) -> Result<Store> {
    let (schema, table) = table_arg(conn, func, v)?;
    // SAFETY: the same connection, not owned (the Store only runs statements on it).
    let own = unsafe { Connection::from_handle(conn.handle())? };
    Store::connect(own, &schema, &table)
}

/// Errors unless `store` keeps a history.
fn require_history(store: &Store, func: &str) -> Result<()> {
    if store.history_on() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{func}: {} keeps no history (created with history=off)",
            store.table
        )))
    }
}

/// `subcog_version(table)`.
fn version(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_version";
    let conn = connection(ctx)?;
    let store = store_of(&conn, F, ctx.get_raw(0))?;
    require_history(&store, F)?;
    store.version()
}

/// A snapshot name: non-empty TEXT of at most [`MAX_NAME`] bytes, not an integer (an
/// integer names a version).
fn name_arg(func: &str, v: ValueRef<'_>) -> Result<String> {
    let name = text_arg(func, "name", v, false)?.unwrap_or_default();
    if name.trim().is_empty()
        || name.len() > MAX_NAME
        || name.chars().any(char::is_control)
        || name.trim().parse::<i64>().is_ok()
    {
        return Err(Error::invalid(format!(
            "{func}(name): expected a non-empty name of at most {MAX_NAME} bytes without \
             control characters that is not a number (numbers are versions), got '{}'",
            name.chars().take(80).collect::<String>()
        )));
    }
    Ok(name)
}

/// `subcog_snapshot(table, name)`.
fn snapshot(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_snapshot";
    let conn = connection(ctx)?;
    let store = store_of(&conn, F, ctx.get_raw(0))?;
    require_history(&store, F)?;
    let name = name_arg(F, ctx.get_raw(1))?;
    let v = store.version()?;
    store.snapshot_add(&name, v, now_ms())?;
    Ok(v)
}

/// `subcog_snapshot_drop(table, name)`.
fn snapshot_drop(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_snapshot_drop";
    let conn = connection(ctx)?;
    let store = store_of(&conn, F, ctx.get_raw(0))?;
    let name = text_arg(F, "name", ctx.get_raw(1), false)?.unwrap_or_default();
    if !store.snapshot_drop(&name)? {
        return Err(Error::invalid(format!(
            "{F}(name): {} has no snapshot named '{name}'",
            store.table
        )));
    }
    Ok(1)
}

/// `subcog_restore(table, snapshot_or_version)`.
fn restore(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_restore";
    let conn = connection(ctx)?;
    let (schema, table) = table_arg(&conn, F, ctx.get_raw(0))?;
    let readonly = conn.is_readonly(schema.as_str()).unwrap_or(false);
    if readonly {
        return Err(Error::invalid(format!(
            "{F}: database '{schema}' is read-only (opened read-only); {table} was not changed"
        )));
    }
    let store = store_of(&conn, F, ctx.get_raw(0))?;
    store.refuse_branch(F)?;
    let at = history::resolve(
        &store,
        &format!("{F}(snapshot_or_version)"),
        &target(&store, &format!("{F}(snapshot_or_version)"), ctx.get_raw(1))?,
    )?;
    let changed = history::diff(&store, at.version, store.version()?)?.len();
    conn.execute(
        &format!(
            "INSERT INTO {}.{t}({t}) VALUES (?1)",
            quote(&schema),
            t = quote(&table)
        ),
        [format!("restore:{}", at.version)],
    )?;
    Ok(changed as i64)
}

/// A version argument of a table-valued function, resolved.
fn version_arg(store: &Store, func: &str, what: &str, v: ValueRef<'_>) -> Result<i64> {
    let what = format!("{func}({what})");
    let t: Target = target(store, &what, v)?;
    Ok(history::resolve(store, &what, &t)?.version)
}

/// `subcog_snapshots(table)`: every snapshot.
struct Snapshots;

impl Spec for Snapshots {
    const DECL: &'static CStr =
        c"CREATE TABLE x(name TEXT, version INTEGER, created_at INTEGER, table_name HIDDEN)";
    const NAME: &'static str = "subcog_snapshots";
    const ARGS: &'static [&'static str] = &["table_name"];
    const REQUIRED: usize = 1;
    const COLUMNS: c_int = 3;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let get = |i: usize| args.get(i).copied().flatten().unwrap_or(ValueRef::Null);
        let store = store_of(conn, Self::NAME, get(0))?;
        Ok(store
            .snapshots()?
            .into_iter()
            .map(|s| {
                vec![
                    Value::Text(s.name),
                    Value::Integer(s.version),
                    Value::Integer(s.created_at),
                ]
            })
            .collect())
    }
}

/// `subcog_history(table, id)`: every change of one memory.
struct History;

impl Spec for History {
    const DECL: &'static CStr = c"CREATE TABLE x(version INTEGER, time INTEGER, change TEXT, \
         id INTEGER, before TEXT, after TEXT, table_name HIDDEN, memory_id HIDDEN)";
    const NAME: &'static str = "subcog_history";
    const ARGS: &'static [&'static str] = &["table_name", "id"];
    const REQUIRED: usize = 2;
    const COLUMNS: c_int = 6;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let get = |i: usize| args.get(i).copied().flatten().unwrap_or(ValueRef::Null);
        let store = store_of(conn, Self::NAME, get(0))?;
        require_history(&store, Self::NAME)?;
        let id = int_arg(Self::NAME, "id", get(1))?;
        let text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
        Ok(store
            .history_of(id)?
            .into_iter()
            .map(|r| {
                vec![
                    Value::Integer(r.version),
                    Value::Integer(r.time),
                    Value::Text(r.op),
                    Value::Integer(r.id),
                    text(r.before),
                    text(r.after),
                ]
            })
            .collect())
    }
}

/// `subcog_diff(table, from [, to])`: the memories that differ between two versions.
struct Diff;

impl Spec for Diff {
    const DECL: &'static CStr = c"CREATE TABLE x(id INTEGER, change TEXT, before TEXT, \
         after TEXT, table_name HIDDEN, from_version HIDDEN, to_version HIDDEN)";
    const NAME: &'static str = "subcog_diff";
    const ARGS: &'static [&'static str] = &["table_name", "from", "to"];
    const REQUIRED: usize = 2;
    const COLUMNS: c_int = 4;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let get = |i: usize| args.get(i).copied().flatten().unwrap_or(ValueRef::Null);
        let store = store_of(conn, Self::NAME, get(0))?;
        require_history(&store, Self::NAME)?;
        let from = version_arg(&store, Self::NAME, "from", get(1))?;
        let to = match args.get(2).copied().flatten() {
            None | Some(ValueRef::Null) => store.version()?,
            Some(v) => version_arg(&store, Self::NAME, "to", v)?,
        };
        let text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
        Ok(history::diff(&store, from, to)?
            .into_iter()
            .map(|d| {
                vec![
                    Value::Integer(d.id),
                    Value::Text(d.change.to_string()),
                    text(d.before),
                    text(d.after),
                ]
            })
            .collect())
    }
}
