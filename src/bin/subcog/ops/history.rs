//! A table's history as SQL (`subcog_version`, `subcog_history`, `subcog_snapshot`,
//! `subcog_snapshots`, `subcog_snapshot_drop`, `subcog_diff`, `subcog_restore`) and its
//! branches (`subcog_branch`, `subcog_merge`): what the history tools of the MCP server
//! and the `snapshot`, `diff`, `restore` and `history` subcommands run. Every function
//! takes the table's name (the MCP server's is [`crate::db::TABLE`]); writes run in one
//! `BEGIN IMMEDIATE` transaction each ([`db::write`]).

use std::borrow::Cow;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::records::{Memory, metadata_of, tags_of};
use super::sql_err;
use crate::db;

/// A version as the history functions take it: a snapshot name, a version number, or a
/// time in ms since the Unix epoch (numbers from 10^12 on: the newest version made at or
/// before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VersionRef {
    /// A version number (or, from 10^12 on, a time in ms).
    Number(i64),
    /// A snapshot name (text that is a number names that version).
    Name(String),
}

impl VersionRef {
    /// The command line's form: an integer is a version (or time), anything else a name.
    pub(crate) fn parse(text: &str) -> VersionRef {
        match text.trim().parse::<i64>() {
            Ok(n) => VersionRef::Number(n),
            Err(_) => VersionRef::Name(text.to_string()),
        }
    }

    /// The SQL value handed to the history functions.
    fn sql(&self) -> SqlValue {
        match self {
            VersionRef::Number(n) => SqlValue::Integer(*n),
            VersionRef::Name(s) => SqlValue::Text(s.clone()),
        }
    }

    /// The version number it names, when that is known without the table (a number
    /// below 10^12).
    fn number(&self) -> Option<i64> {
        match self {
            VersionRef::Number(n) if *n < TIME_MIN => Some(*n),
            VersionRef::Number(_) => None,
            VersionRef::Name(s) => s.trim().parse::<i64>().ok().filter(|n| *n < TIME_MIN),
        }
    }
}

/// Numbers from this value on name a time in ms, not a version (as in the extension).
const TIME_MIN: i64 = 1_000_000_000_000;

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionRef::Number(n) => write!(f, "{n}"),
            VersionRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for VersionRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VersionRef::Number(n) => s.serialize_i64(*n),
            VersionRef::Name(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for VersionRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if !s.trim().is_empty() => Ok(VersionRef::Name(s)),
            Value::Number(n) => n.as_i64().map(VersionRef::Number).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected a snapshot name (text) or a version (an integer), got {n}"
                ))
            }),
            other => Err(serde::de::Error::custom(format!(
                "expected a snapshot name (text) or a version (an integer), got {other}"
            ))),
        }
    }
}

impl JsonSchema for VersionRef {
    fn schema_name() -> Cow<'static, str> {
        "VersionRef".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A snapshot name (text, from memory_snapshot), a version number \
                (integer, from memory_history or memory_restore) or a time in milliseconds \
                since the Unix epoch (integers from 10^12 on: the newest version made at or \
                before it)."
        })
    }
}

/// A memory's row as the history recorded it (before or after a change): a [`Memory`]
/// whose `superseded_by` is always absent (the history records links as their own changes).
pub(crate) type RowState = Memory;

/// The JSON the extension stores in `before`/`after` (`tags` and `metadata` as JSON text).
#[derive(Deserialize)]
struct RawRow {
    id: i64,
    content: String,
    namespace: String,
    #[serde(default)]
    tags: Option<String>,
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    source: Option<String>,
    importance: f64,
    created_at: i64,
    updated_at: i64,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// Reads a `before`/`after` column: `None` for NULL (absent), else the row.
fn row_state(text: Option<String>) -> Result<Option<RowState>, String> {
    let Some(text) = text else {
        return Ok(None);
    };
    let raw: RawRow = serde_json::from_str(&text)
        .map_err(|e| format!("the history holds a row that is not a memory's JSON ({e})"))?;
    let json = |t: Option<&str>| t.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let tags = json(raw.tags.as_deref()).map(tags_of).unwrap_or_default();
    let metadata = json(raw.metadata.as_deref())
        .map(metadata_of)
        .unwrap_or_default();
    Ok(Some(RowState {
        id: raw.id,
        content: raw.content,
        namespace: raw.namespace,
        tags,
        metadata,
        source: raw.source,
        importance: raw.importance,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        expires_at: raw.expires_at,
        superseded_by: None,
    }))
}

/// One recorded change of a memory (`subcog_history`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct HistoryEntry {
    /// The version this change made (as_of, memory_diff and memory_restore take it).
    pub(crate) version: i64,
    /// When, in ms since the Unix epoch.
    pub(crate) time: i64,
    /// "insert", "update", "delete", "merge" (a duplicate merged into it) or "restore".
    pub(crate) change: String,
    /// The memory before the change; absent when it did not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) before: Option<RowState>,
    /// The memory after the change; absent when it no longer exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<RowState>,
}

impl HistoryEntry {
    /// The namespace of the memory at this change.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .map(|r| r.namespace.as_str())
    }
}

/// A `subcog_history` row as read: version, time, change, before, after.
type RawEntry = (i64, i64, String, Option<String>, Option<String>);

/// The table's current version (0 before any change).
///
/// # Errors
/// The table keeps no history, is not a `memories` table, or SQLite's error.
pub(crate) fn version(conn: &Connection, table: &str) -> Result<i64, String> {
    db::with_retry(|| conn.query_row("SELECT subcog_version(?1)", [table], |r| r.get(0)))
        .map_err(sql_err("reading the version"))
}

/// Every recorded change of memory `id`, oldest first (empty when the history holds none).
///
/// # Errors
/// The table keeps no history, or SQLite's error.
pub(crate) fn history(
    conn: &Connection,
    table: &str,
    id: i64,
) -> Result<Vec<HistoryEntry>, String> {
    let rows: Vec<RawEntry> = db::with_retry(|| {
        let mut st = conn.prepare(
            "SELECT version, time, change, before, after FROM subcog_history(?1, ?2) \
             ORDER BY version",
        )?;
        let rows = st.query_map(rusqlite::params![table, id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect()
    })
    .map_err(sql_err("reading the history"))?;
    rows.into_iter()
        .map(|(version, time, change, before, after)| {
            Ok(HistoryEntry {
                version,
                time,
                change,
                before: row_state(before)?,
                after: row_state(after)?,
            })
        })
        .collect()
}

/// A snapshot: a name for a version.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct Snapshot {
    /// The snapshot's name.
    pub(crate) name: String,
    /// The version it names.
    pub(crate) version: i64,
    /// When it was taken, ms since the Unix epoch.
    pub(crate) created_at: i64,
}

/// Every snapshot of the table, oldest version first.
///
/// # Errors
/// SQLite's error (e.g. not a `memories` table).
pub(crate) fn snapshots(conn: &Connection, table: &str) -> Result<Vec<Snapshot>, String> {
    db::with_retry(|| {
        let mut st = conn.prepare(
            "SELECT name, version, created_at FROM subcog_snapshots(?1) \
             ORDER BY version, created_at, name",
        )?;
        let rows = st.query_map([table], |r| {
            Ok(Snapshot {
                name: r.get(0)?,
                version: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        rows.collect()
    })
    .map_err(sql_err("listing the snapshots"))
}

/// Names the current version `name`; returns that version.
///
/// # Errors
/// An existing, empty or numeric name, a table without history, or SQLite's error.
pub(crate) fn snapshot_create(conn: &Connection, table: &str, name: &str) -> Result<i64, String> {
    db::write(conn, |tx| {
        tx.query_row("SELECT subcog_snapshot(?1, ?2)", [table, name], |r| {
            r.get(0)
        })
    })
    .map_err(sql_err("creating the snapshot"))
}

/// Drops snapshot `name`; returns the version it named.
///
/// # Errors
/// An unknown name, or SQLite's error.
pub(crate) fn snapshot_drop(conn: &Connection, table: &str, name: &str) -> Result<i64, String> {
    let version = db::write(conn, |tx| {
        let version: Option<i64> = tx
            .query_row(
                "SELECT version FROM subcog_snapshots(?1) WHERE name = ?2",
                [table, name],
                |r| r.get(0),
            )
            .optional()?;
        if version.is_some() {
            tx.query_row("SELECT subcog_snapshot_drop(?1, ?2)", [table, name], |r| {
                r.get::<_, i64>(0)
            })?;
        }
        Ok(version)
    })
    .map_err(sql_err("dropping the snapshot"))?;
    version.ok_or_else(|| unknown_snapshot(conn, table, name))
}

/// The message for a snapshot name the table does not have, listing the ones it has.
fn unknown_snapshot(conn: &Connection, table: &str, name: &str) -> String {
    let names = snapshots(conn, table)
        .map(|v| v.into_iter().map(|s| s.name).collect::<Vec<_>>())
        .unwrap_or_default();
    let known = if names.is_empty() {
        "it has none".to_string()
    } else {
        let shown: Vec<String> = names.iter().take(20).map(|n| format!("{n:?}")).collect();
        format!("it has {}", shown.join(", "))
    };
    format!("{table} has no snapshot named {name:?} ({known})")
}

/// One memory whose row differs between two versions (`subcog_diff`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct DiffRow {
    /// Id of the memory.
    pub(crate) id: i64,
    /// "added" (absent at `from`), "removed" (absent at `to`) or "changed".
    pub(crate) change: String,
    /// The memory at `from`; absent for "added".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) before: Option<RowState>,
    /// The memory at `to`; absent for "removed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<RowState>,
}

impl DiffRow {
    /// The namespaces of the row's two sides (one or two).
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.before
            .iter()
            .chain(self.after.iter())
            .map(|r| r.namespace.as_str())
    }
}

/// Every memory whose row differs between `from` and `to` (default: now), ordered by id.
///
/// # Errors
/// An unknown snapshot, a version in the future or older than the history kept, a table
/// without history, or SQLite's error.
pub(crate) fn diff(
    conn: &Connection,
    table: &str,
    from: &VersionRef,
    to: Option<&VersionRef>,
) -> Result<Vec<DiffRow>, String> {
    let to = to.map_or(SqlValue::Null, VersionRef::sql);
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = db::with_retry(|| {
        let mut st = conn
            .prepare("SELECT id, change, before, after FROM subcog_diff(?1, ?2, ?3) ORDER BY id")?;
        let rows = st.query_map(rusqlite::params![table, from.sql(), to.clone()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    })
    .map_err(sql_err("comparing the versions"))?;
    rows.into_iter()
        .map(|(id, change, before, after)| {
            Ok(DiffRow {
                id,
                change,
                before: row_state(before)?,
                after: row_state(after)?,
            })
        })
        .collect()
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct Restored {
    /// The snapshot or version restored, as given.
    pub(crate) to: VersionRef,
    /// The version restored (absent when `to` was a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub(crate) restored_version: Option<i64>,
    /// The table's version before the restore.
    pub(crate) previous_version: i64,
    /// The table's version after it (the restore is recorded as changes of its own: to
    /// undo it, restore previous_version).
    pub(crate) version: i64,
    /// How many memories' rows it changed (deleted + recreated + reverted).
    pub(crate) changed: i64,
    /// Memories added since that version, now deleted.
    pub(crate) deleted: i64,
    /// Memories deleted since that version, now back.
    pub(crate) recreated: i64,
    /// Memories changed since that version, now as they were.
    pub(crate) reverted: i64,
}

/// Brings the table back to `to`, in one transaction with the counts it reports.
///
/// # Errors
/// An unknown snapshot, a version in the future or older than the history kept, a
/// read-only database, a table without history, or SQLite's error.
pub(crate) fn restore(conn: &Connection, table: &str, to: &VersionRef) -> Result<Restored, String> {
    let target = to.sql();
    let (previous, counts, changed, version, snap) = db::write(conn, |tx| {
        let previous: i64 = tx.query_row("SELECT subcog_version(?1)", [table], |r| r.get(0))?;
        let snap: Option<i64> = match to {
            VersionRef::Name(name) => tx
                .query_row(
                    "SELECT version FROM subcog_snapshots(?1) WHERE name = ?2",
                    [table, name.as_str()],
                    |r| r.get(0),
                )
                .optional()?,
            VersionRef::Number(_) => None,
        };
        let mut counts = [0i64; 3];
        {
            let mut st =
                tx.prepare("SELECT change, count(*) FROM subcog_diff(?1, ?2) GROUP BY change")?;
            let mut rows = st.query(rusqlite::params![table, target.clone()])?;
            while let Some(r) = rows.next()? {
                let change: String = r.get(0)?;
                let n: i64 = r.get(1)?;
                match change.as_str() {
                    "added" => counts[0] += n,
                    "removed" => counts[1] += n,
                    _ => counts[2] += n,
                }
            }
        }
        let changed: i64 = tx.query_row(
            "SELECT subcog_restore(?1, ?2)",
            rusqlite::params![table, target.clone()],
            |r| r.get(0),
        )?;
        let version: i64 = tx.query_row("SELECT subcog_version(?1)", [table], |r| r.get(0))?;
        Ok((previous, counts, changed, version, snap))
    })
    .map_err(sql_err("restoring"))?;
    Ok(Restored {
        to: to.clone(),
        restored_version: snap.or_else(|| to.number()),
        previous_version: previous,
        version,
        changed,
        deleted: counts[0],
        recreated: counts[1],
        reverted: counts[2],
    })
}

/// Forks branch table `name` off `base` at `at` (default: now) with `subcog_branch`;
/// returns the fork version.
///
/// # Errors
/// An existing table `name`, an unknown snapshot or version, no `subcog_branch` in this
/// build, or SQLite's error.
pub(crate) fn branch(
    conn: &Connection,
    base: &str,
    name: &str,
    at: Option<&VersionRef>,
) -> Result<i64, String> {
    db::write(conn, |tx| match at {
        Some(at) => tx.query_row(
            "SELECT subcog_branch(?1, ?2, ?3)",
            rusqlite::params![base, name, at.sql()],
            |r| r.get(0),
        ),
        None => tx.query_row("SELECT subcog_branch(?1, ?2)", [base, name], |r| r.get(0)),
    })
    .map_err(sql_err("creating the branch"))
}

/// A memory both sides changed since the fork (`subcog_merge`'s `conflicts`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct Conflict {
    /// Id of the memory.
    pub(crate) id: i64,
    /// The memory at the fork (null: absent).
    #[serde(default)]
    pub(crate) base: Value,
    /// The memory in the table merged into (null: absent).
    #[serde(default)]
    pub(crate) ours: Value,
    /// The memory in the branch (null: absent).
    #[serde(default)]
    pub(crate) theirs: Value,
}

/// What a merge did (`subcog_merge`'s JSON).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Merged {
    /// How many changes of the branch were applied.
    pub(crate) applied: i64,
    /// Memories both sides changed since the fork (resolved by `policy`).
    #[serde(default)]
    pub(crate) conflicts: Vec<Conflict>,
    /// The policy applied: "fail", "ours" or "theirs".
    pub(crate) policy: String,
    /// Ids of memories the branch created that were renumbered because the id was taken
    /// (branch id -> new id); absent when none were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Map<String, Value>")]
    pub(crate) renumbered: Option<Map<String, Value>>,
}

/// Merges branch table `branch` into `into` with `subcog_merge` (`policy`: "fail",
/// "ours" or "theirs"; the function's default when `None`).
///
/// # Errors
/// Conflicts under "fail" (the message lists them), an unknown branch, no
/// `subcog_merge` in this build, a result that is not the documented JSON, or SQLite's
/// error.
pub(crate) fn merge(
    conn: &Connection,
    branch: &str,
    into: &str,
    policy: Option<&str>,
) -> Result<Merged, String> {
    let text: String = db::write(conn, |tx| match policy {
        Some(p) => tx.query_row("SELECT subcog_merge(?1, ?2, ?3)", [branch, into, p], |r| {
            r.get(0)
        }),
        None => tx.query_row("SELECT subcog_merge(?1, ?2)", [branch, into], |r| r.get(0)),
    })
    .map_err(sql_err("merging"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("subcog_merge returned JSON this build does not read ({e}): {text}"))
}
