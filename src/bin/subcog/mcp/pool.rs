//! The connections the MCP tools run on: one writer (every write goes through it, so
//! writes are serialised in this process) and, for `subcog serve`, reader connections
//! that serve reads concurrently (the database is in WAL mode, so readers do not wait
//! for the writer). Each call runs on Tokio's blocking pool.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

/// A writer connection and zero or more reader connections to the same database.
pub(crate) struct Pool {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    /// One permit per reader: a call that holds one always finds a free reader.
    permits: Arc<Semaphore>,
}

/// Locks a connection; a panic in an earlier call poisons the lock, but the connection
/// itself is fine.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// One connection for reads and writes (stdio: one client, one call at a time).
    pub(crate) fn single(conn: Connection) -> Pool {
        Pool::new(conn, Vec::new())
    }

    /// A writer and readers (with no readers, reads go to the writer).
    pub(crate) fn new(writer: Connection, readers: Vec<Connection>) -> Pool {
        let n = readers.len();
        Pool {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers.into_iter().map(Mutex::new).collect()),
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    /// Runs `f` on the writer connection, after the writes before it.
    ///
    /// # Errors
    /// The error of `f`, or the blocking task failing.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = lock(&writer);
            f(&conn)
        })
        .await
        .map_err(|e| format!("internal error: the tool call did not complete: {e}"))?
    }

    /// Runs `f` on a free reader connection (waiting for one), or on the writer when the
    /// pool has no readers.
    ///
    /// # Errors
    /// The error of `f`, or the blocking task failing.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        if self.readers.is_empty() {
            return self.write(f).await;
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| format!("internal error: the connection pool is closed: {e}"))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let out = {
                let free = readers.iter().find_map(|m| match m.try_lock() {
                    Ok(g) => Some(g),
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                });
                // With a permit held a reader is always free; wait on the first otherwise.
                let conn = match free {
                    Some(g) => g,
                    None => lock(&readers[0]),
                };
                f(&conn)
            };
            drop(permit);
            out
        })
        .await
        .map_err(|e| format!("internal error: the tool call did not complete: {e}"))?
    }
}
