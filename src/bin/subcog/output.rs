//! Running SQL text and printing its rows (`subcog sql`, `subcog shell`).

use std::io::Write;

use clap::ValueEnum;
use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection};
use serde_json::Value;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputMode {
    /// Values separated by `|`, one row per line (sqlite3's default).
    List,
    /// Comma-separated values, RFC 4180 quoting.
    Csv,
    /// One JSON object per row, in a JSON array.
    Json,
    /// One `column = value` line per value, a blank line between rows.
    Line,
    /// Aligned columns with a header and a rule.
    Table,
}

impl OutputMode {
    /// Parses a mode name as `.mode` takes it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(name, true).ok()
    }

    /// The names `.mode` accepts.
    pub(crate) fn names() -> String {
        Self::value_variants()
            .iter()
            .filter_map(|m| m.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Printing settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// Row layout.
    pub(crate) mode: OutputMode,
    /// Print column names first (list and csv; table always has them).
    pub(crate) headers: bool,
}

/// The error text of a write to a closed pipe (`subcog export db | head`), which `main`
/// treats as a normal end.
pub(crate) const BROKEN_PIPE: &str = "output closed (broken pipe)";

/// Message for a failed write to the output.
pub(crate) fn io_err(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        BROKEN_PIPE.to_string()
    } else {
        format!("cannot write the output: {e}")
    }
}

/// Blobs longer than this print as `<blob N bytes>` instead of hex.
const BLOB_HEX_MAX: usize = 32;

fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) if b.len() <= BLOB_HEX_MAX => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("x'{hex}'")
        }
        ValueRef::Blob(b) => format!("<blob {} bytes>", b.len()),
    }
}

fn json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        other => Value::String(text(other)),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Runs every statement of `sql` and prints the rows of those that return any.
///
/// # Errors
/// The first failing statement's SQLite error (statements before it have run).
pub(crate) fn run_sql(
    conn: &Connection,
    sql: &str,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut batch = Batch::new(conn, sql);
    loop {
        let mut stmt = match batch.next() {
            Ok(Some(stmt)) => stmt,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let mut rows = stmt.raw_query();
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut json_rows: Vec<Value> = Vec::new();
        let mut first = true;
        let io = io_err;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let values: Vec<ValueRef<'_>> = (0..names.len())
                .map(|i| row.get_ref(i))
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| e.to_string())?;
            match fmt.mode {
                OutputMode::List | OutputMode::Csv => {
                    let (sep, quote): (&str, fn(&str) -> String) = if fmt.mode == OutputMode::Csv {
                        (",", csv_field)
                    } else {
                        ("|", |s: &str| s.to_string())
                    };
                    if first && fmt.headers {
                        let h: Vec<String> = names.iter().map(|n| quote(n)).collect();
                        writeln!(out, "{}", h.join(sep)).map_err(io)?;
                    }
                    let cells: Vec<String> = values.iter().map(|v| quote(&text(*v))).collect();
                    writeln!(out, "{}", cells.join(sep)).map_err(io)?;
                }
                OutputMode::Line => {
                    if !first {
                        writeln!(out).map_err(io)?;
                    }
                    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
                    for (n, v) in names.iter().zip(&values) {
                        writeln!(out, "{n:>width$} = {}", text(*v)).map_err(io)?;
                    }
                }
                OutputMode::Json => {
                    let obj: serde_json::Map<String, Value> = names
                        .iter()
                        .cloned()
                        .zip(values.iter().map(|v| json(*v)))
                        .collect();
                    json_rows.push(Value::Object(obj));
                }
                OutputMode::Table => table.push(values.iter().map(|v| text(*v)).collect()),
            }
            first = false;
        }
        match fmt.mode {
            OutputMode::Json if !json_rows.is_empty() => {
                let s = serde_json::to_string_pretty(&Value::Array(json_rows))
                    .map_err(|e| e.to_string())?;
                writeln!(out, "{s}").map_err(io)?;
            }
            OutputMode::Table if !table.is_empty() => {
                print_table(&names, &table, out).map_err(io)?
            }
            _ => {}
        }
        out.flush().map_err(io)?;
    }
}

fn print_table(names: &[String], rows: &[Vec<String>], out: &mut dyn Write) -> std::io::Result<()> {
    let one_line = |s: &str| s.replace('\n', "\\n");
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(one_line(cell).chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| -> String {
        cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&mut names.iter().cloned()))?;
    writeln!(out, "{}", line(&mut widths.iter().map(|w| "-".repeat(*w))))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(|c| one_line(c))))?;
    }
    Ok(())
}
