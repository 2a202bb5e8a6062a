//! `subcog shell`: an interactive SQL shell (rustyline) with the extension registered.

use std::ffi::CString;
use std::io::Write;
use std::path::Path;

use rusqlite::Connection;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::output::{Format, OutputMode, run_sql};

const HELP: &str = "\
.help                 this text
.tables [PATTERN]     list tables and views (LIKE pattern)
.schema [PATTERN]     show CREATE statements (LIKE pattern on the table name)
.mode [MODE]          show or set the output mode: list, csv, json, line, table
.headers on|off       column names in list and csv mode
.quit / .exit         leave the shell (also Ctrl-D)
Any other input is SQL, run when it ends with ';'. The memories module, embed(),
vec_search() and the other subcog functions are available.";

/// Whether `sql` holds complete statements (SQLite's own `sqlite3_complete`).
fn is_complete(sql: &str) -> bool {
    match CString::new(sql) {
        // SAFETY: a valid NUL-terminated string that outlives the call.
        Ok(c) => unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 },
        // An embedded NUL: hand it to SQLite, which reports the error.
        Err(_) => true,
    }
}

/// What a dot-command asks of the loop.
enum Next {
    Continue,
    Quit,
}

fn dot_command(conn: &Connection, line: &str, fmt: &mut Format, out: &mut dyn Write) -> Next {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let arg = words.next();
    let result: Result<(), String> = match cmd {
        ".quit" | ".exit" | ".q" => return Next::Quit,
        ".help" => writeln!(out, "{HELP}").map_err(|e| e.to_string()),
        ".tables" => {
            let sql = "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') \
                       AND name NOT LIKE 'sqlite_%' AND name LIKE ?1 ORDER BY name";
            list_names(conn, sql, arg.unwrap_or("%"), out)
        }
        ".schema" => {
            let sql = "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL \
                       AND tbl_name LIKE ?1 ORDER BY tbl_name = name DESC, rowid";
            list_names(conn, sql, arg.unwrap_or("%"), out)
        }
        ".mode" => match arg {
            None => writeln!(out, "current output mode: {:?}", fmt.mode).map_err(|e| e.to_string()),
            Some(name) => match OutputMode::parse(name) {
                Some(mode) => {
                    fmt.mode = mode;
                    Ok(())
                }
                None => Err(format!(
                    "unknown mode {name:?}; use one of: {}",
                    OutputMode::names()
                )),
            },
        },
        ".headers" | ".header" => match arg {
            Some("on") => {
                fmt.headers = true;
                Ok(())
            }
            Some("off") => {
                fmt.headers = false;
                Ok(())
            }
            _ => Err("usage: .headers on|off".into()),
        },
        other => Err(format!("unknown command {other}; .help lists the commands")),
    };
    if let Err(e) = result {
        eprintln!("Error: {e}");
    }
    Next::Continue
}

fn list_names(
    conn: &Connection,
    sql: &str,
    pattern: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let names = stmt
        .query_map([pattern], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| e.to_string())?;
    for n in names {
        writeln!(out, "{n}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the shell on `conn` until `.quit` or end of input.
///
/// # Errors
/// The terminal cannot be set up.
pub(crate) fn run(conn: &Connection, db_path: &Path) -> Result<(), String> {
    let mut editor =
        DefaultEditor::new().map_err(|e| format!("cannot start the line editor: {e}"))?;
    let history = crate::db::default_path().with_file_name("shell_history");
    let _ = editor.load_history(&history);
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        println!(
            "subcog {} (SQLite {}) on {}\nEnter \".help\" for usage hints.",
            env!("CARGO_PKG_VERSION"),
            rusqlite::version(),
            db_path.display()
        );
    }
    let mut fmt = Format {
        mode: OutputMode::List,
        headers: false,
    };
    let mut buffer = String::new();
    let stdout = std::io::stdout();
    loop {
        let prompt = match (interactive, buffer.is_empty()) {
            (false, _) => "",
            (true, true) => "subcog> ",
            (true, false) => "   ...> ",
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(format!("cannot read input: {e}")),
        };
        if buffer.is_empty() && line.trim_start().starts_with('.') {
            let _ = editor.add_history_entry(line.as_str());
            let mut out = stdout.lock();
            match dot_command(conn, line.trim(), &mut fmt, &mut out) {
                Next::Quit => break,
                Next::Continue => continue,
            }
        }
        if buffer.is_empty() && line.trim().is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if is_complete(&buffer) {
            let _ = editor.add_history_entry(buffer.trim_end());
            let mut out = stdout.lock();
            if let Err(e) = run_sql(conn, &buffer, fmt, &mut out) {
                eprintln!("Error: {e}");
            }
            buffer.clear();
        }
    }
    if !buffer.trim().is_empty() {
        let mut out = stdout.lock();
        if let Err(e) = run_sql(conn, &buffer, fmt, &mut out) {
            eprintln!("Error: {e}");
        }
    }
    if interactive {
        let _ = editor.save_history(&history);
    }
    Ok(())
}
