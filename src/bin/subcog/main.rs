//! `subcog`: persistent memory for AI agents in one binary.
//!
//! SQLite is bundled and the subcog extension is registered on every connection, so the
//! binary needs no system SQLite. Subcommands: `mcp` (MCP server over stdio), `shell`
//! (interactive SQL), `sql` (one-shot SQL), `import` / `export` (JSON lines), `context`
//! (a token-budgeted context for a question). Every memory
//! operation is SQL against the `memories` virtual table.

mod db;
mod mcp;
mod ops;
mod output;
mod shell;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::db::Prepare;
use crate::output::{Format, OutputMode};

/// Persistent memory for AI agents: SQLite with the subcog extension built in.
#[derive(Debug, Parser)]
#[command(name = "subcog", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the memory tools over MCP on stdin/stdout (logs go to stderr).
    Mcp {
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Interactive SQL shell with the extension loaded.
    Shell {
        /// Database file [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        path: Option<PathBuf>,
    },
    /// Run SQL (one or more statements) and print the rows.
    Sql {
        /// Database file (created if missing; ":memory:" for a temporary one).
        path: PathBuf,
        /// The SQL text.
        sql: String,
        /// Output mode.
        #[arg(long, value_enum, default_value_t = OutputMode::List)]
        mode: OutputMode,
        /// Print column names first (list and csv modes).
        #[arg(long)]
        header: bool,
    },
    /// Import memories from a JSON lines file (one object with at least "content" per line).
    Import {
        /// Memory database (the `memories` table is created if missing).
        path: PathBuf,
        /// JSON lines file.
        file: PathBuf,
        /// Keep the "id" of each line instead of assigning new ids.
        #[arg(long)]
        keep_ids: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the context for a question: the best memories, verbatim, packed into a token
    /// budget (for prompts and hooks).
    Context {
        /// The question or task; `-` reads it from stdin, where a JSON object with a
        /// "prompt" string (what a Claude Code UserPromptSubmit hook receives) gives that.
        query: String,
        /// Most tokens the context may take (the model's tokenizer).
        #[arg(long, default_value_t = 1024)]
        budget: u32,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// text, markdown or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Export all memories as JSON lines to stdout (without embeddings).
    Export {
        /// Memory database.
        path: PathBuf,
    },
}

/// Sends logs to stderr (stdout belongs to the MCP protocol and to query output).
/// `RUST_LOG` sets the level, default `warn`. rmcp is capped at `info` whatever `RUST_LOG`
/// asks: at `debug` it logs each request's arguments and each response, which would put
/// the secrets and personal data that redaction keeps out of the database into the log.
fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if filter
        .max_level_hint()
        .is_none_or(|l| l > tracing::level_filters::LevelFilter::INFO)
        && let Ok(cap) = "rmcp=info".parse()
    {
        filter = filter.add_directive(cap);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    tracing::debug!(
        "rmcp logs at info at most: its debug events hold request arguments and results"
    );
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Mcp { db } => mcp::serve(db),
        Command::Shell { path } => {
            let (path, prepare) = match path {
                Some(p) => (p, Prepare::Plain),
                None => (db::resolve(None), Prepare::Memories),
            };
            let conn = db::open(&path, prepare)?;
            shell::run(&conn, &path)
        }
        Command::Sql {
            path,
            sql,
            mode,
            header,
        } => {
            let conn = db::open(&path, Prepare::Plain)?;
            let fmt = Format {
                mode,
                headers: header,
            };
            output::run_sql(&conn, &sql, fmt, &mut std::io::stdout().lock())
        }
        Command::Import {
            path,
            file,
            keep_ids,
            quiet,
        } => {
            let conn = db::open(&path, Prepare::Memories)?;
            let started = std::time::Instant::now();
            let s = transfer::import(&conn, &file, keep_ids, quiet)?;
            eprintln!(
                "imported {} lines into {} in {:.1} s: {}",
                s.lines(),
                path.display(),
                started.elapsed().as_secs_f64(),
                s.describe()
            );
            Ok(())
        }
        Command::Context {
            query,
            budget,
            db,
            namespace,
            format,
        } => {
            let query = if query == "-" {
                query_from_stdin()?
            } else {
                query
            };
            let conn = db::open(&db::resolve(db), Prepare::Memories)?;
            let text =
                ops::context_text(&conn, &query, budget, namespace.as_deref(), Some(&format))?;
            if !text.is_empty() {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}").map_err(|e| {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        output::BROKEN_PIPE.to_string()
                    } else {
                        format!("writing the context: {e}")
                    }
                })?;
            }
            Ok(())
        }
        Command::Export { path } => {
            if !path.exists() {
                return Err(format!("{}: no such database", path.display()));
            }
            let conn = db::open(&path, Prepare::Plain)?;
            let n = transfer::export(&conn, &mut std::io::stdout().lock())?;
            eprintln!("exported {n} memories from {}", path.display());
            Ok(())
        }
    }
}

/// The query of `subcog context -`: stdin, or its `prompt` when stdin is a JSON object
/// with a `prompt` string (a Claude Code hook's input).
fn query_from_stdin() -> Result<String, String> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading the query from stdin: {e}"))?;
    match serde_json::from_str::<serde_json::Value>(&input) {
        Ok(serde_json::Value::Object(o)) => match o.get("prompt") {
            Some(serde_json::Value::String(p)) => Ok(p.clone()),
            _ => Err("stdin is a JSON object without a \"prompt\" string".into()),
        },
        _ => Ok(input),
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e == output::BROKEN_PIPE => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subcog: {e}");
            ExitCode::FAILURE
        }
    }
}
