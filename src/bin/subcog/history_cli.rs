//! The history subcommands: `subcog snapshot`, `subcog diff`, `subcog restore` and
//! `subcog history`, over [`crate::ops::history`] (the same SQL as the MCP tools). Rows
//! go to stdout, summaries to stderr; every error is a message and a non-zero exit.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::db::{self, Prepare};
use crate::ops::history::{self, DiffRow, RowState, VersionRef};
use crate::output::BROKEN_PIPE;

/// Opens an existing database (a history needs one: these commands never create it).
///
/// # Errors
/// The file does not exist or cannot be opened.
pub(crate) fn open_existing(path: Option<PathBuf>) -> Result<(Connection, PathBuf), String> {
    let path = db::resolve(path);
    if !path.exists() {
        return Err(format!(
            "{}: no such database (give --db PATH, or set SUBCOG_DB)",
            path.display()
        ));
    }
    let conn = db::open(&path, Prepare::Plain)?;
    Ok((conn, path))
}

/// Maps a write error on stdout to a message ([`BROKEN_PIPE`] for a closed pipe).
fn out_err(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        BROKEN_PIPE.to_string()
    } else {
        format!("writing to stdout: {e}")
    }
}

/// A time in ms since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `subcog snapshot NAME`: names the current version; prints it.
///
/// # Errors
/// See [`history::snapshot_create`].
pub(crate) fn snapshot_create(db: Option<PathBuf>, table: &str, name: &str) -> Result<(), String> {
    let (conn, path) = open_existing(db)?;
    let version = history::snapshot_create(&conn, table, name)?;
    println!("{version}");
    eprintln!(
        "subcog: snapshot {name:?} of {table} in {} names version {version}",
        path.display()
    );
    Ok(())
}

/// `subcog snapshot --list`: one line per snapshot, `NAME VERSION CREATED`.
///
/// # Errors
/// See [`history::snapshots`].
pub(crate) fn snapshot_list(db: Option<PathBuf>, table: &str) -> Result<(), String> {
    let (conn, _) = open_existing(db)?;
    let snaps = history::snapshots(&conn, table)?;
    let width = snaps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for s in &snaps {
        writeln!(
            out,
            "{:<width$}  {:>8}  {}",
            s.name,
            s.version,
            iso_time(s.created_at)
        )
        .map_err(out_err)?;
    }
    let current = history::version(&conn, table)?;
    eprintln!(
        "subcog: {} snapshot{} of {table}; current version {current}",
        snaps.len(),
        if snaps.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// `subcog snapshot --drop NAME`.
///
/// # Errors
/// See [`history::snapshot_drop`].
pub(crate) fn snapshot_drop(db: Option<PathBuf>, table: &str, name: &str) -> Result<(), String> {
    let (conn, _) = open_existing(db)?;
    let version = history::snapshot_drop(&conn, table, name)?;
    eprintln!("subcog: snapshot {name:?} of {table} (version {version}) dropped");
    Ok(())
}

/// The fields that differ between two rows (`updated_at` only when nothing else does).
fn changed_fields(a: &RowState, b: &RowState) -> Vec<String> {
    let mut out = Vec::new();
    if a.content != b.content {
        out.push(format!("content: {:?} -> {:?}", a.content, b.content));
    }
    if a.namespace != b.namespace {
        out.push(format!("namespace: {:?} -> {:?}", a.namespace, b.namespace));
    }
    if a.tags != b.tags {
        out.push(format!("tags: {:?} -> {:?}", a.tags, b.tags));
    }
    if a.metadata != b.metadata {
        out.push(format!(
            "metadata: {} -> {}",
            serde_json::Value::Object(a.metadata.clone()),
            serde_json::Value::Object(b.metadata.clone())
        ));
    }
    if a.source != b.source {
        out.push(format!("source: {:?} -> {:?}", a.source, b.source));
    }
    if a.importance != b.importance {
        out.push(format!("importance: {} -> {}", a.importance, b.importance));
    }
    if a.expires_at != b.expires_at {
        let t = |x: Option<i64>| x.map_or_else(|| "never".to_string(), iso_time);
        out.push(format!(
            "expires_at: {} -> {}",
            t(a.expires_at),
            t(b.expires_at)
        ));
    }
    if out.is_empty() && a.updated_at != b.updated_at {
        out.push(format!(
            "updated_at: {} -> {}",
            iso_time(a.updated_at),
            iso_time(b.updated_at)
        ));
    }
    out
}

/// One diff row as a line of text.
fn diff_line(r: &DiffRow) -> String {
    match (&r.before, &r.after) {
        (Some(a), Some(b)) => format!(
            "changed  #{}  [{}]  {}",
            r.id,
            b.namespace,
            changed_fields(a, b).join("; ")
        ),
        (None, Some(b)) => format!("added    #{}  [{}]  {}", r.id, b.namespace, b.content),
        (Some(a), None) => format!("removed  #{}  [{}]  {}", r.id, a.namespace, a.content),
        (None, None) => format!("{}  #{}", r.change, r.id),
    }
}

/// `subcog diff FROM [TO]`: one line (or, with `json`, one JSON object) per memory that
/// differs; a summary on stderr.
///
/// # Errors
/// See [`history::diff`].
pub(crate) fn diff(
    db: Option<PathBuf>,
    table: &str,
    from: &str,
    to: Option<&str>,
    json: bool,
) -> Result<(), String> {
    let (conn, _) = open_existing(db)?;
    let from_v = VersionRef::parse(from);
    let to_v = to.map(VersionRef::parse);
    let rows = history::diff(&conn, table, &from_v, to_v.as_ref())?;
    let mut out = std::io::stdout().lock();
    let mut counts = [0usize; 3];
    for r in &rows {
        match r.change.as_str() {
            "added" => counts[0] += 1,
            "removed" => counts[1] += 1,
            _ => counts[2] += 1,
        }
        let line = if json {
            serde_json::to_string(r).map_err(|e| format!("cannot encode JSON: {e}"))?
        } else {
            diff_line(r)
        };
        writeln!(out, "{line}").map_err(out_err)?;
    }
    eprintln!(
        "subcog: {} memor{} of {table} differ between {from_v} and {} ({} added, {} removed, \
         {} changed)",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" },
        to_v.as_ref()
            .map_or_else(|| "now".to_string(), ToString::to_string),
        counts[0],
        counts[1],
        counts[2]
    );
    Ok(())
}

/// `subcog restore SNAPSHOT_OR_VERSION`: brings the table back; the summary on stdout.
///
/// # Errors
/// See [`history::restore`].
pub(crate) fn restore(db: Option<PathBuf>, table: &str, to: &str) -> Result<(), String> {
    let (conn, path) = open_existing(db)?;
    let r = history::restore(&conn, table, &VersionRef::parse(to))?;
    let at = r
        .restored_version
        .map_or_else(String::new, |v| format!(" (version {v})"));
    println!(
        "restored {table} in {} to {}{at}: {} memor{} changed ({} deleted, {} recreated, \
         {} reverted); version {} -> {} (undo: subcog restore --db {} {})",
        path.display(),
        r.to,
        r.changed,
        if r.changed == 1 { "y" } else { "ies" },
        r.deleted,
        r.recreated,
        r.reverted,
        r.previous_version,
        r.version,
        shell_word(&path),
        r.previous_version
    );
    Ok(())
}

/// `path` quoted for a shell when it needs quoting.
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `subcog history ID`: every recorded change of one memory, oldest first.
///
/// # Errors
/// No history for that id, or see [`history::history`].
pub(crate) fn show_history(
    db: Option<PathBuf>,
    table: &str,
    id: i64,
    json: bool,
) -> Result<(), String> {
    let (conn, _) = open_existing(db)?;
    let entries = history::history(&conn, table, id)?;
    if entries.is_empty() {
        return Err(format!("{table} has no history for memory id {id}"));
    }
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let line = if json {
            serde_json::to_string(e).map_err(|e| format!("cannot encode JSON: {e}"))?
        } else {
            let what = match (&e.before, &e.after) {
                (Some(a), Some(b)) => changed_fields(a, b).join("; "),
                (None, Some(b)) => format!("[{}]  {}", b.namespace, b.content),
                (Some(a), None) => format!("[{}]  {}", a.namespace, a.content),
                (None, None) => String::new(),
            };
            format!(
                "{:>8}  {}  {:<8} {what}",
                e.version,
                iso_time(e.time),
                e.change
            )
        };
        writeln!(out, "{line}").map_err(out_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_765_000_000_000), "2025-12-06T05:46:40Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word(Path::new("/a/b.db")), "/a/b.db");
        assert_eq!(shell_word(Path::new("/a b/it's.db")), "'/a b/it'\\''s.db'");
    }
}
