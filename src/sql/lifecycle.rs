//! SQL functions about the life of memories: where an INSERT landed (dedup) and the
//! purge of expired memories (TTL).
//!
//! * `subcog_last_insert(table)` -> JSON `{"id", "outcome", "action", "supersedes",
//!   "similarity"}` of the last INSERT into `table` on this connection (`outcome`:
//!   `inserted`, `duplicate` or `superseded`; see [`crate::table::dedup`]), or NULL when there
//!   was none or it was rolled back. Rows of the open transaction that await their
//!   embedding are embedded (and near-duplicate checked) first, so the outcome is final.
//! * `subcog_purge(table)` -> INTEGER: deletes the memories of `table` whose
//!   `expires_at` has passed and returns how many (the same as
//!   `INSERT INTO t(t) VALUES ('purge')`, which returns nothing).
//!
//! `table` is `name` or `schema.name`.

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;

use crate::error::{Error, Result};
use crate::names::{quote, resolve};
use crate::row::{now_ms, type_name};
use crate::table::dedup;

/// Registers `subcog_last_insert` and `subcog_purge` on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_function_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("subcog_last_insert", 1, flags, |ctx| Ok(last_insert(ctx)?))?;
    conn.create_scalar_function("subcog_purge", 1, flags, |ctx| Ok(purge(ctx)?))?;
    Ok(())
}

/// `(schema, table)` from the function's argument.
fn table_arg(ctx: &Context<'_>, func: &str) -> Result<(String, String)> {
    let name = match ctx.get_raw(0) {
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        other => {
            return Err(Error::invalid(format!(
                "{func}(table): expected the table name as TEXT, got {}",
                type_name(&other)
            )));
        }
    };
    resolve(&connection(ctx)?, &format!("{func}(table)"), &name)
}

/// The connection running the function (not owned).
fn connection(ctx: &Context<'_>) -> Result<Connection> {
    // SAFETY: the connection running this function; `from_handle` does not take ownership.
    Ok(unsafe {
        let c = ctx.get_connection()?;
        Connection::from_handle(c.handle())?
    })
}

fn last_insert(ctx: &Context<'_>) -> Result<Option<String>> {
    let (schema, table) = table_arg(ctx, "subcog_last_insert")?;
    let conn = connection(ctx)?;
    // SAFETY: only the address is used, as the key the table recorded under.
    let db = unsafe { conn.handle() as usize };
    let Some(outcome) = dedup::last(db, &schema, &table) else {
        return Ok(None);
    };
    // A savepoint rolled back since (no xRollback for those) may have undone it.
    let store = crate::store::Store::connect(connection(ctx)?, &schema, &table)?;
    // A query on the table by rowid: the number of rows (0 or 1) it finds.
    let read_through_table = |id: i64| -> Result<i64> {
        Ok(conn.query_row(
            &format!(
                "SELECT count(*) FROM {}.{} WHERE rowid = ?1",
                quote(&schema),
                quote(&table)
            ),
            [id],
            |r| r.get::<_, i64>(0),
        )?)
    };
    let exists = if store.branch_info()?.is_some() {
        // A branch stores only what it wrote: a duplicate it skipped is its base's row.
        read_through_table(outcome.id)? > 0
    } else {
        store.exists(outcome.id)?
    };
    if !exists {
        return Ok(None);
    }
    let mut outcome = outcome;
    if outcome.kind == "inserted" {
        // Any query on the table embeds (and near-duplicate checks) what awaits it; the
        // check's verdict is the `supersedes` link.
        read_through_table(outcome.id)?;
        let link = store.supersedes(outcome.id)?;
        if let Some((older, similarity)) = link {
            outcome.kind = "superseded";
            outcome.supersedes = Some(older);
            outcome.similarity = Some(similarity);
        }
    }
    Ok(Some(outcome.to_json()))
}

fn purge(ctx: &Context<'_>) -> Result<i64> {
    let (schema, table) = table_arg(ctx, "subcog_purge")?;
    let store = crate::store::Store::connect(connection(ctx)?, &schema, &table)?;
    store.refuse_branch("subcog_purge")?;
    Ok(crate::table::commands::purge(&store, now_ms())? as i64)
}
