//! Branches and merge as SQL ([`crate::table::branch`]):
//!
//! * `subcog_branch(base, name [, at])` -> INTEGER: runs `CREATE VIRTUAL TABLE name USING
//!   memories(branch_of='base', at='at')` in `base`'s database and returns the fork
//!   version (`at`: a snapshot name (TEXT), a version or a time in ms (INTEGER); NULL or
//!   omitted: `base`'s current version);
//! * `subcog_merge(branch, into [, policy])` -> TEXT: merges `branch` into its base
//!   `into` through `into`'s own write path (`INSERT INTO into(into) VALUES
//!   ('merge:<policy>:<branch>')`, one statement: all or nothing) and returns the JSON
//!   `{"applied", "conflicts": [{"id", "base", "ours", "theirs"}], "policy",
//!   "renumbered": {"<branch id>": <new id>}, "links"}`; `policy` `fail` (default: any
//!   conflict is an error naming the ids, nothing changes), `ours`, `theirs`;
//! * `subcog_merge_conflicts(branch, into)`: table-valued, `(id, base, ours, theirs)`,
//!   the conflicts a merge would meet (rows as JSON, NULL when absent).

use std::ffi::{CStr, c_int};

use rusqlite::Connection;
use rusqlite::functions::{Context as FnContext, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::vtab::Module;

use super::context::{Spec, Tvf, connection, text_arg};
use crate::error::{Error, Result};
use crate::names::{quote, resolve};
use crate::store::Store;
use crate::table::branch::{self, Policy};

/// Registers `subcog_branch`, `subcog_merge` and `subcog_merge_conflicts` on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_function_v2` / `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let write = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    for n in [2, 3] {
        conn.create_scalar_function("subcog_branch", n, write, |ctx| Ok(create(ctx)?))?;
        conn.create_scalar_function("subcog_merge", n, write, |ctx| Ok(merge(ctx)?))?;
    }
    const CONFLICTS: Module<Tvf<Conflicts>> = Module::eponymous_only_module();
    conn.create_module(c"subcog_merge_conflicts", &CONFLICTS, None)?;
    Ok(())
}

/// `(schema, table)` of the memories table argument `what` of `func`.
fn table(conn: &Connection, func: &str, what: &str, v: ValueRef<'_>) -> Result<(String, String)> {
    let name = text_arg(func, what, v, false)?.unwrap_or_default();
    resolve(conn, &format!("{func}({what})"), &name)
}

/// Errors when `schema` is read-only.
fn writable(conn: &Connection, func: &str, schema: &str) -> Result<()> {
    if conn.is_readonly(schema).unwrap_or(false) {
        return Err(Error::invalid(format!(
            "{func}: database '{schema}' is read-only (opened read-only); nothing was changed"
        )));
    }
    Ok(())
}

/// SQL string literal of `s`.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `subcog_branch(base, name [, at])`.
fn create(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_branch";
    let conn = connection(ctx)?;
    let (schema, base) = table(&conn, F, "base", ctx.get_raw(0))?;
    writable(&conn, F, &schema)?;
    let name = text_arg(F, "name", ctx.get_raw(1), false)?.unwrap_or_default();
    if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{F}(name): expected a table name (non-empty, at most 256 bytes, no control \
             characters), got '{}'",
            name.chars().take(80).collect::<String>()
        )));
    }
    let at = match ctx.len() {
        3 => match ctx.get_raw(2) {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            other => {
                return Err(Error::invalid(format!(
                    "{F}(at): expected a snapshot name (TEXT) or a version or time in ms \
                     (INTEGER), got {:?}",
                    other.data_type()
                )));
            }
        },
        _ => None,
    };
    let mut opts = format!("branch_of={}", literal(&base));
    if let Some(at) = &at {
        opts.push_str(&format!(", at={}", literal(at)));
    }
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE {}.{} USING memories({opts})",
        quote(&schema),
        quote(&name)
    ))?;
    // SAFETY: the same connection, not owned (the Store only runs statements on it).
    let own = unsafe { Connection::from_handle(conn.handle())? };
    let store = Store::connect(own, &schema, &name)?;
    match store.branch_info()? {
        Some((_, fork)) => Ok(fork),
        None => Err(Error::Corrupt(format!(
            "{F}: {name} was created without its fork"
        ))),
    }
}

/// `subcog_merge(branch, into [, policy])`.
fn merge(ctx: &FnContext<'_>) -> Result<String> {
    const F: &str = "subcog_merge";
    let conn = connection(ctx)?;
    let (bschema, bname) = table(&conn, F, "branch", ctx.get_raw(0))?;
    let (schema, into) = table(&conn, F, "into", ctx.get_raw(1))?;
    if !bschema.eq_ignore_ascii_case(&schema) {
        return Err(Error::invalid(format!(
            "{F}: '{bname}' (database {bschema}) and '{into}' (database {schema}) are in \
             different databases: unrelated tables"
        )));
    }
    let policy = match ctx.len() {
        3 => match text_arg(F, "policy", ctx.get_raw(2), true)? {
            None => Policy::Fail,
            Some(p) => Policy::parse(&format!("{F}(policy)"), &p)?,
        },
        _ => Policy::Fail,
    };
    writable(&conn, F, &schema)?;
    // Checked here too, so that the error names the arguments, not the command.
    let bstore = open(&conn, &bschema, &bname)?;
    let istore = open(&conn, &schema, &into)?;
    branch::fork_of(F, &bstore, &istore)?;
    let _ = branch::take_merge_result();
    conn.execute(
        &format!(
            "INSERT INTO {}.{t}({t}) VALUES (?1)",
            quote(&schema),
            t = quote(&into)
        ),
        [branch::merge_command(policy, &bname)],
    )?;
    branch::take_merge_result()
        .ok_or_else(|| Error::Corrupt(format!("{F}: the merge into {into} reported no result")))
}

/// The store of `schema.table` on `conn` (not owned).
fn open(conn: &Connection, schema: &str, table: &str) -> Result<Store> {
    // SAFETY: the same connection, not owned (the Store only runs statements on it).
    let own = unsafe { Connection::from_handle(conn.handle())? };
    Store::connect(own, schema, table)
}

/// `subcog_merge_conflicts(branch, into)`: the conflicts of a merge, by id.
struct Conflicts;

impl Spec for Conflicts {
    const DECL: &'static CStr = c"CREATE TABLE x(id INTEGER, base TEXT, ours TEXT, \
         theirs TEXT, branch HIDDEN, into_table HIDDEN)";
    const NAME: &'static str = "subcog_merge_conflicts";
    const ARGS: &'static [&'static str] = &["branch", "into"];
    const REQUIRED: usize = 2;
    const COLUMNS: c_int = 4;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let get = |i: usize| args.get(i).copied().flatten().unwrap_or(ValueRef::Null);
        let (bschema, bname) = table(conn, Self::NAME, "branch", get(0))?;
        let (schema, into) = table(conn, Self::NAME, "into", get(1))?;
        if !bschema.eq_ignore_ascii_case(&schema) {
            return Err(Error::invalid(format!(
                "{}: '{bname}' and '{into}' are in different databases: unrelated tables",
                Self::NAME
            )));
        }
        let bstore = open(conn, &bschema, &bname)?;
        let istore = open(conn, &schema, &into)?;
        let text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
        Ok(branch::conflicts(Self::NAME, &bstore, &istore)?
            .into_iter()
            .map(|c| {
                vec![
                    Value::Integer(c.id),
                    text(c.base),
                    text(c.ours),
                    text(c.theirs),
                ]
            })
            .collect())
    }
}
