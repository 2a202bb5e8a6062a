//! `subcog`: persistent memory for AI agents in one binary.
//!
//! SQLite is bundled and the subcog extension is registered on every connection, so the
//! binary needs no system SQLite. Subcommands: `mcp` (MCP server over stdio), `serve`
//! (MCP over HTTP with per-token namespace access), `token` (its tokens file), `shell`
//! (interactive SQL), `sql` (one-shot SQL), `import` / `export` (JSON lines), `context`
//! (a token-budgeted context for a question), and the history commands `snapshot`,
//! `diff`, `restore` and `history`. Every memory operation is SQL against the `memories`
//! virtual table.

mod access;
mod db;
mod history_cli;
mod mcp;
mod ops;
mod output;
mod serve;
mod shell;
mod tokens;
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
    /// Serve the memory tools over MCP's streamable HTTP transport (POST /mcp), with
    /// per-token namespace access, and GET /health.
    Serve {
        /// Address to listen on, IP:PORT. A non-loopback address needs --tokens.
        #[arg(long, default_value = "127.0.0.1:8420")]
        listen: String,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Tokens file (`subcog token add`); every request then needs
        /// "Authorization: Bearer <token>". Reloaded on SIGHUP.
        #[arg(long, value_name = "FILE", env = "SUBCOG_TOKENS")]
        tokens: Option<PathBuf>,
        /// Largest request body in bytes (413 above it).
        #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
        max_body: usize,
        /// Reader connections: how many reads (searches, lists, gets) run at once.
        /// Writes go through one connection, one at a time.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        readers: u16,
        /// Longest time one request may take, in seconds, reading its body included (408).
        #[arg(long, value_name = "SECONDS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        request_timeout: u64,
        /// Also accept this name in the Host header (e.g. the server's DNS name); may be
        /// repeated. Loopback names and the listening IP are always accepted.
        #[arg(long, value_name = "HOST")]
        allowed_host: Vec<String>,
    },
    /// Manage the tokens file of `subcog serve`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
        /// The context memory gave then: a snapshot name, a version, or a time in ms.
        #[arg(long, value_name = "SNAPSHOT_OR_VERSION")]
        as_of: Option<String>,
    },
    /// Export all memories as JSON lines to stdout (without embeddings).
    Export {
        /// Memory database.
        path: PathBuf,
    },
    /// Name the current version of the memories (a snapshot) and print it; or list the
    /// snapshots (--list), or drop one (--drop NAME).
    Snapshot {
        /// The snapshot's name (not a number: numbers are versions).
        #[arg(required_unless_present_any = ["list", "drop"],
              conflicts_with_all = ["list", "drop"])]
        name: Option<String>,
        /// List the snapshots: name, version, creation time (UTC).
        #[arg(long, conflicts_with = "drop")]
        list: bool,
        /// Drop this snapshot.
        #[arg(long, value_name = "NAME")]
        drop: Option<String>,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// The memories table.
        #[arg(long, default_value = db::TABLE)]
        table: String,
    },
    /// Print the memories that differ between two versions (snapshot names or version
    /// numbers; TO defaults to now): added, removed or changed, one per line.
    Diff {
        /// The older side: a snapshot name or a version.
        from: String,
        /// The newer side: a snapshot name or a version [default: now].
        to: Option<String>,
        /// One JSON object per line: {id, change, before?, after?}.
        #[arg(long)]
        json: bool,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// The memories table.
        #[arg(long, default_value = db::TABLE)]
        table: String,
    },
    /// Bring the memories back to a snapshot or version, in one transaction (recorded:
    /// restore the version printed to undo it).
    Restore {
        /// A snapshot name or a version.
        #[arg(value_name = "SNAPSHOT_OR_VERSION")]
        to: String,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// The memories table.
        #[arg(long, default_value = db::TABLE)]
        table: String,
    },
    /// Print every recorded change of one memory, oldest first.
    History {
        /// The memory's id.
        id: i64,
        /// One JSON object per line: {version, time, change, before?, after?}.
        #[arg(long)]
        json: bool,
        /// Memory database [default: $SUBCOG_DB, else ~/.local/share/subcog/memory.db].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// The memories table.
        #[arg(long, default_value = db::TABLE)]
        table: String,
    },
}

/// The `subcog token` subcommands (the tokens file holds SHA-256 hashes only).
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it, once (only its hash is stored).
    Add {
        /// Unique name: what the server's logs show for this token.
        name: String,
        /// Namespaces it may read, comma-separated; * = every namespace
        /// [default: those of --write].
        #[arg(long, value_name = "NS,..")]
        read: Option<String>,
        /// Namespaces it may store into and change, comma-separated; * = every namespace.
        #[arg(long, value_name = "NS,..")]
        write: Option<String>,
        /// memory_stats shows this token the whole database.
        #[arg(long)]
        admin: bool,
        /// Stop accepting it after this long: seconds, or e.g. 12h, 30d, 2w.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Tokens file (created if missing).
        #[arg(long, value_name = "FILE", env = "SUBCOG_TOKENS")]
        tokens: PathBuf,
    },
    /// List the tokens: name, scopes, admin flag, expiry (never the tokens).
    List {
        /// Tokens file.
        #[arg(long, value_name = "FILE", env = "SUBCOG_TOKENS")]
        tokens: PathBuf,
    },
    /// Remove a token (a running server drops it on SIGHUP).
    Revoke {
        /// The token's name.
        name: String,
        /// Tokens file.
        #[arg(long, value_name = "FILE", env = "SUBCOG_TOKENS")]
        tokens: PathBuf,
    },
}

/// Sends logs to stderr (stdout belongs to the MCP protocol and to query output).
/// `RUST_LOG` sets the level, default `warn`. rmcp is capped at `info` whatever `RUST_LOG`
/// asks: at `debug` it logs each request's arguments and each response, which would put
/// the secrets and personal data that redaction keeps out of the database into the log.
/// `default` is the filter without `RUST_LOG` (`subcog serve` adds its access log).
fn init_logging(default: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
        Command::Serve {
            listen,
            db,
            tokens,
            max_body,
            readers,
            request_timeout,
            allowed_host,
        } => serve::run(serve::Options {
            listen,
            db,
            tokens,
            max_body,
            readers: usize::from(readers),
            request_timeout: std::time::Duration::from_secs(request_timeout),
            allowed_hosts: allowed_host,
        }),
        Command::Token { command } => token(command),
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
            as_of,
        } => {
            let query = if query == "-" {
                query_from_stdin()?
            } else {
                query
            };
            let conn = db::open(&db::resolve(db), Prepare::Memories)?;
            let as_of = as_of.as_deref().map(ops::history::VersionRef::parse);
            let text = ops::context_text(
                &conn,
                &query,
                budget,
                ops::ContextOptions {
                    namespace: namespace.as_deref(),
                    format: Some(&format),
                    as_of: as_of.as_ref(),
                },
            )?;
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
        Command::Snapshot {
            name,
            list,
            drop,
            db,
            table,
        } => match (name, drop) {
            (_, Some(name)) => history_cli::snapshot_drop(db, &table, &name),
            (Some(name), None) if !list => history_cli::snapshot_create(db, &table, &name),
            _ => history_cli::snapshot_list(db, &table),
        },
        Command::Diff {
            from,
            to,
            json,
            db,
            table,
        } => history_cli::diff(db, &table, &from, to.as_deref(), json),
        Command::Restore { to, db, table } => history_cli::restore(db, &table, &to),
        Command::History {
            id,
            json,
            db,
            table,
        } => history_cli::show_history(db, &table, id, json),
    }
}

/// `subcog token ...`.
fn token(command: TokenCommand) -> Result<(), String> {
    match command {
        TokenCommand::Add {
            name,
            read,
            write,
            admin,
            expires,
            tokens: path,
        } => {
            let token = tokens::add(
                &path,
                &name,
                read.as_deref(),
                write.as_deref(),
                admin,
                expires.as_deref(),
            )?;
            println!("{token}");
            eprintln!(
                "subcog: token {name:?} added to {}; it is shown only this once. A running \
                 `subcog serve` picks it up on SIGHUP.",
                path.display()
            );
            Ok(())
        }
        TokenCommand::List { tokens: path } => {
            for line in tokens::list(&path)? {
                println!("{line}");
            }
            Ok(())
        }
        TokenCommand::Revoke { name, tokens: path } => {
            tokens::revoke(&path, &name)?;
            eprintln!(
                "subcog: token {name:?} revoked in {}; send SIGHUP to a running `subcog serve`",
                path.display()
            );
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
    let cli = Cli::parse();
    init_logging(match cli.command {
        Command::Serve { .. } => "warn,subcog::access=info",
        _ => "warn",
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e == output::BROKEN_PIPE => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subcog: {e}");
            ExitCode::FAILURE
        }
    }
}
