//! Errors of the extension, and the panic guard used at every SQLite callback.
//!
//! Every message here ends up in front of a user as the text of a SQL error, so each one
//! names what was wrong, what was expected and what was given.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Everything that can go wrong inside subcog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value supplied by the user is not acceptable (wrong type, range, size or shape).
    #[error("{0}")]
    Invalid(String),
    /// The embedding model or ONNX Runtime is missing or failed to load.
    #[error("{0}")]
    Model(String),
    /// ONNX Runtime failed while running the model.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The HNSW index (usearch) reported an error.
    #[error("HNSW index error: {0}")]
    Index(String),
    /// The stored state of a table is not what this build understands.
    #[error("{0}")]
    Corrupt(String),
    /// An error from SQLite while reading or writing the shadow tables.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A panic was caught at a SQLite callback boundary; the host survives.
    #[error("internal error in subcog (caught panic): {0}")]
    Panic(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`] from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl From<Error> for rusqlite::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Sqlite(inner) => inner,
            other => rusqlite::Error::ModuleError(other.to_string()),
        }
    }
}

impl From<cxx::Exception> for Error {
    fn from(e: cxx::Exception) -> Self {
        Error::Index(e.what().to_string())
    }
}

/// Runs `f`, turning a panic into [`Error::Panic`] so that it never unwinds into SQLite.
///
/// rusqlite's virtual-table trampolines are `extern "C"` without a panic guard, so every
/// trait method of our virtual tables calls through here.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> rusqlite::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(rusqlite::Error::from),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::Panic(msg).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_panics_into_errors() {
        let r: rusqlite::Result<()> = guard(|| panic!("boom"));
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn guard_passes_values() {
        assert_eq!(guard(|| Ok(3)).ok(), Some(3));
    }
}
