//! Opening databases: the default per-user path, WAL mode, the busy timeout, retries on
//! `SQLITE_BUSY`, and the `memories` table created on first use.
//!
//! Every connection the binary opens goes through [`open`], which registers the subcog
//! extension (statically linked, same code as `libsubcog.so`) on it.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// Name of the `memories` virtual table the MCP server, `import` and `export` use.
pub(crate) const TABLE: &str = "memories";

/// Environment variable that overrides the default database path.
const DB_ENV: &str = "SUBCOG_DB";

/// How long one SQLite call waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`with_retry`] keeps retrying a whole operation that still hits a lock.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Page size, in bytes, of the database files the binary creates. A stored vector row
/// (384 float32: 1,536 bytes plus its cell) fits twice in SQLite's default 4,096-byte page,
/// leaving a quarter of each vector page empty; five fit in 8,192 bytes. Measured on
/// 100,000 MiniLM memories (default table, BENCHMARKS.md): file 360 -> 319 MiB, the vector
/// table's pages 76% -> 95% full, KNN, keyword and hybrid CPU time unchanged or lower.
/// Files that already exist keep their page size (SQLite fixes it when the file is made).
const PAGE_SIZE: u32 = 8192;

/// Bytes of the database file each of the binary's connections reads through a memory map
/// (`PRAGMA mmap_size`) instead of copying pages into SQLite's cache: 1 GiB of address
/// space, not of memory (the pages are the OS page cache's, shared by every connection).
/// Measured on 100,000 MiniLM memories (default table, BENCHMARKS.md), two connections of
/// one process interleaved per query: hybrid search 8-9% less CPU, KNN 3-4%, keyword
/// 1-3%. `$SUBCOG_MMAP_SIZE` (bytes; 0 = off) overrides it. The price, from SQLite's
/// documentation: an I/O error while reading a mapped page is a SIGBUS that ends the
/// process instead of an SQL error (turn it off on unreliable or network file systems).
const MMAP_SIZE: i64 = 1 << 30;

/// Environment variable overriding [`MMAP_SIZE`].
const MMAP_ENV: &str = "SUBCOG_MMAP_SIZE";

/// [`MMAP_SIZE`], or `$SUBCOG_MMAP_SIZE` when it is a non-negative integer.
///
/// # Errors
/// A message naming the variable when it is set to something else.
fn mmap_size() -> Result<i64, String> {
    match std::env::var(MMAP_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                format!("{MMAP_ENV}={v:?}: expected a number of bytes (0 turns mapping off)")
            }),
        _ => Ok(MMAP_SIZE),
    }
}

/// What [`open`] prepares in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepare {
    /// Only register the extension and set the busy timeout (`subcog sql`, `subcog shell PATH`).
    Plain,
    /// Also switch to WAL and create the `memories` table if it is missing.
    Memories,
}

/// The default database: `$SUBCOG_HOME/memory.db`, where `SUBCOG_HOME` defaults to
/// `$XDG_DATA_HOME/subcog`, else `~/.local/share/subcog` (the directory `make setup`
/// installs the model into).
pub(crate) fn default_path() -> PathBuf {
    subcog::embedder::subcog_home().join("memory.db")
}

/// The database to use: the explicit path if any, else `$SUBCOG_DB`, else [`default_path`].
pub(crate) fn resolve(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| {
            std::env::var_os(DB_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(default_path)
}

/// Opens `path` (creating the file and its directory if needed), registers the subcog
/// extension, sets the busy timeout and the memory map ([`MMAP_SIZE`]) and, with
/// [`Prepare::Memories`], gives a new file
/// [`PAGE_SIZE`]-byte pages, switches to WAL and creates the `memories` table.
///
/// # Errors
/// A message naming the path and what failed.
pub(crate) fn open(path: &Path, prepare: Prepare) -> Result<Connection, String> {
    let shown = path.display();
    let in_memory = path.as_os_str() == ":memory:" || path.as_os_str().is_empty();
    if !in_memory
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let conn = Connection::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("{shown}: cannot set the busy timeout: {e}"))?;
    subcog::register(&conn)
        .map_err(|e| format!("{shown}: cannot register the subcog extension: {e}"))?;
    if !in_memory {
        let mmap = mmap_size()?;
        conn.execute_batch(&format!("PRAGMA mmap_size = {mmap}"))
            .map_err(|e| format!("{shown}: cannot set mmap_size: {e}"))?;
    }
    if prepare == Prepare::Memories {
        if !in_memory {
            // Before anything writes the file (switching to WAL does): a no-op on a
            // database that has pages already.
            conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))
                .map_err(|e| format!("{shown}: cannot set the page size: {e}"))?;
            with_retry(|| {
                conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            })
            .map_err(|e| format!("{shown}: cannot switch to WAL mode: {e}"))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL")
                .map_err(|e| format!("{shown}: {e}"))?;
        }
        ensure_table(&conn)
            .map_err(|e| format!("{shown}: cannot create the {TABLE} table: {e}"))?;
    }
    Ok(conn)
}

/// Creates the `memories` table unless it exists (safe against concurrent creators).
///
/// # Errors
/// SQLite errors other than a lock that outlasts [`RETRY_FOR`].
fn ensure_table(conn: &Connection) -> rusqlite::Result<()> {
    let exists = |c: &Connection| -> rusqlite::Result<bool> {
        c.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [TABLE],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if with_retry(|| exists(conn))? {
        return Ok(());
    }
    write(conn, |tx| {
        tx.execute_batch(&format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING memories()"
        ))
    })
}

/// Whether the error is a lock held by another connection.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ) || {
        // Errors raised inside the virtual table carry SQLite's message, not its code.
        let msg = e.to_string();
        msg.contains("database is locked") || msg.contains("database table is locked")
    }
}

/// Runs `f` again (with a growing pause) while it fails with a lock error, for up to
/// [`RETRY_FOR`]; the busy timeout already waited inside each attempt.
///
/// # Errors
/// The last error of `f`.
pub(crate) fn with_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match f() {
            Err(e) if is_busy(&e) && start.elapsed() < RETRY_FOR => {
                // A little jitter so that competing processes do not retry in lock-step.
                let jitter = u64::from(std::process::id() % 17);
                sleep(pause + Duration::from_millis(jitter));
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Runs `f` inside a `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so
/// two writers never deadlock on a lock upgrade), retried as a whole on lock errors.
///
/// # Errors
/// The error of `f`, or of BEGIN/COMMIT.
pub(crate) fn write<T>(
    conn: &Connection,
    mut f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    with_retry(|| {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })
}
