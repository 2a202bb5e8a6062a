//! `subcog import` and `subcog export`: memories as JSON lines.
//!
//! One memory per line: `{"id", "content", "namespace", "tags", "metadata", "source",
//! "importance", "created_at", "updated_at"}`, the shape of a `memories` row without its
//! embedding (recomputed on import). An import needs only `content`; `id` is kept with
//! `--keep-ids`, `created_at` is kept when present, `updated_at` is set by the table.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rusqlite::Connection;

use crate::ops::{self, ImportRecord, Outcome, Stored};
use crate::output::io_err;

/// Rows per write transaction: large enough to be fast, small enough that concurrent MCP
/// servers on the same database wait at most a few seconds for the lock.
const BATCH: usize = 64;

/// What an import did, line by line, from the table's report on each INSERT
/// (`subcog_last_insert`). `inserted + superseded` memories were added to the table;
/// `merged` and `unchanged` lines added none.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ImportSummary {
    /// Lines stored as new memories.
    inserted: usize,
    /// Lines that were exact duplicates (same text ignoring case and spacing, same
    /// namespace) of an existing memory and were merged into it (`dedup=merge`, the
    /// default): its tags, metadata, importance and expiry absorbed the line's.
    merged: usize,
    /// Lines that were exact duplicates left out unchanged (`dedup=skip`).
    unchanged: usize,
    /// Lines stored as new memories that supersede an older near-duplicate memory (which
    /// no longer comes back from searches).
    superseded: usize,
    /// Blank lines skipped.
    blank: usize,
}

impl ImportSummary {
    /// Lines imported (every non-blank line).
    pub(crate) fn lines(&self) -> usize {
        self.inserted + self.merged + self.unchanged + self.superseded
    }

    /// Counts one line's outcome.
    fn add(&mut self, s: &Stored) {
        match (s.outcome, s.action.as_deref()) {
            (Outcome::Inserted, _) => self.inserted += 1,
            (Outcome::Superseded, _) => self.superseded += 1,
            (Outcome::Duplicate, Some("skip")) => self.unchanged += 1,
            (Outcome::Duplicate, _) => self.merged += 1,
        }
    }

    /// What became of the lines, e.g. `16800 inserted, 120 merged into existing memories,
    /// 80 superseded older memories` (the dedup=skip and blank counts only when not 0).
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "{} inserted, {} merged into existing memories, {} superseded older memories",
            self.inserted, self.merged, self.superseded
        );
        if self.unchanged > 0 {
            s += &format!(
                ", {} duplicates of existing memories left unchanged (dedup=skip)",
                self.unchanged
            );
        }
        match self.blank {
            0 => {}
            1 => s += " (1 blank line skipped)",
            n => s += &format!(" ({n} blank lines skipped)"),
        }
        s
    }
}

/// Reads every record of `file` (all are checked before anything is written).
fn read_records(file: &Path) -> Result<(Vec<(usize, ImportRecord)>, usize), String> {
    let f = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let mut records = Vec::new();
    let mut skipped = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| format!("{}:{n}: cannot read: {e}", file.display()))?;
        if line.trim().is_empty() {
            skipped += 1;
            continue;
        }
        let rec: ImportRecord = serde_json::from_str(&line).map_err(|e| {
            format!(
                "{}:{n}: not a memory ({e}); each line must be a JSON object with at least \"content\"",
                file.display()
            )
        })?;
        records.push((n, rec));
    }
    Ok((records, skipped))
}

/// Imports `file` into the `memories` table of `conn`, with a progress bar on stderr
/// (when stderr is a terminal and `quiet` is off).
///
/// # Errors
/// An unreadable file or invalid line (nothing is written then), or a failing batch
/// (earlier batches stay committed; the message says how many).
pub(crate) fn import(
    conn: &Connection,
    file: &Path,
    keep_ids: bool,
    quiet: bool,
) -> Result<ImportSummary, String> {
    let (records, skipped) = read_records(file)?;
    let total = records.len() as u64;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} importing [{bar:40}] {pos}/{len} memories, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut summary = ImportSummary {
        blank: skipped,
        ..ImportSummary::default()
    };
    for chunk in records.chunks(BATCH) {
        let outcomes = ops::store_batch(conn, chunk, keep_ids).map_err(|e| {
            bar.abandon();
            format!(
                "{}: {e} (the {} lines before this batch were imported: {})",
                file.display(),
                summary.lines(),
                summary.describe()
            )
        })?;
        outcomes.iter().for_each(|s| summary.add(s));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Writes every memory of `conn` as JSON lines to `out`, in id order; returns the count.
///
/// # Errors
/// The table's error, or a write error.
pub(crate) fn export(conn: &Connection, out: &mut dyn Write) -> Result<usize, String> {
    let mut out = BufWriter::new(out);
    let mut n = 0;
    ops::for_each(conn, |m| {
        serde_json::to_writer(&mut out, &m).map_err(|e| io_err(e.into()))?;
        out.write_all(b"\n").map_err(io_err)?;
        n += 1;
        Ok(())
    })?;
    out.flush().map_err(io_err)?;
    Ok(n)
}
