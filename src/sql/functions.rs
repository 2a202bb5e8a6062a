//! Scalar SQL functions: `embed`, `vec_f32`, `vec_to_json`, `vec_distance`,
//! `subcog_fts_query`, `subcog_info`, `subcog_config`.

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;

use crate::embedder;
use crate::error::{Error, Result};
use crate::row::type_name;
use crate::search::text;
use crate::settings;
use crate::vector::{self, Metric};

/// Version of this extension (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers every scalar function on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_function_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("embed", 1, det, |ctx| Ok(embed(ctx)?))?;
    conn.create_scalar_function("vec_f32", 1, det | FunctionFlags::SQLITE_INNOCUOUS, |ctx| {
        Ok(vec_f32(ctx)?)
    })?;
    conn.create_scalar_function(
        "vec_to_json",
        1,
        det | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(vec_to_json(ctx)?),
    )?;
    for n in [2, 3] {
        conn.create_scalar_function(
            "vec_distance",
            n,
            det | FunctionFlags::SQLITE_INNOCUOUS,
            |ctx| Ok(vec_distance(ctx)?),
        )?;
    }
    conn.create_scalar_function(
        "subcog_fts_query",
        1,
        det | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(fts_query(ctx)?),
    )?;
    conn.create_scalar_function("subcog_info", 0, FunctionFlags::SQLITE_UTF8, |ctx| {
        Ok(info(ctx)?)
    })?;
    for n in [1, 2] {
        conn.create_scalar_function(
            "subcog_config",
            n,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
            |ctx| Ok(config(ctx)?),
        )?;
    }
    conn.create_scalar_function(
        "subcog_integrity",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        |ctx| Ok(integrity(ctx)?),
    )?;
    Ok(())
}

/// `embed(text)` -> BLOB of 384 little-endian float32, unit-norm; NULL for NULL.
///
/// # Errors
/// Non-TEXT argument; model missing (with the command that installs it); inference errors.
fn embed(ctx: &Context<'_>) -> Result<Option<Vec<u8>>> {
    let text = match ctx.get_raw(0) {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|_| Error::invalid("embed(text): expected UTF-8 TEXT, got invalid UTF-8"))?,
        other => {
            return Err(Error::invalid(format!(
                "embed(text): expected TEXT, got {}",
                type_name(&other)
            )));
        }
    };
    let e = embedder::get().map_err(|e| Error::Model(format!("embed(): {e}")))?;
    Ok(Some(vector::encode(&e.embed(text)?)))
}

/// `vec_f32(json_or_blob)` -> BLOB of float32.
fn vec_f32(ctx: &Context<'_>) -> Result<Option<Vec<u8>>> {
    if let ValueRef::Null = ctx.get_raw(0) {
        return Ok(None);
    }
    let v = vector::from_sql(ctx.get_raw(0), None, "vec_f32(vector)")?;
    Ok(Some(vector::encode(&v)))
}

/// `vec_to_json(blob)` -> JSON array text.
fn vec_to_json(ctx: &Context<'_>) -> Result<Option<String>> {
    if let ValueRef::Null = ctx.get_raw(0) {
        return Ok(None);
    }
    let v = vector::from_sql(ctx.get_raw(0), None, "vec_to_json(vector)")?;
    Ok(Some(serde_json::Value::from(v).to_string()))
}

/// `vec_distance(a, b [, metric])` -> distance under `metric` (default cosine), computed
/// in f64.
///
/// # Errors
/// A vector that is not one ([`vector::from_sql`]: non-finite elements, a norm above
/// [`vector::MAX_NORM`]), vectors of different lengths, an unknown metric, or a zero vector
/// under cosine (it has no direction).
fn vec_distance(ctx: &Context<'_>) -> Result<Option<f64>> {
    if matches!(ctx.get_raw(0), ValueRef::Null) || matches!(ctx.get_raw(1), ValueRef::Null) {
        return Ok(None);
    }
    let a = vector::from_sql(ctx.get_raw(0), None, "vec_distance(a)")?;
    let b = vector::from_sql(ctx.get_raw(1), None, "vec_distance(b)")?;
    if a.len() != b.len() {
        return Err(Error::invalid(format!(
            "vec_distance: vectors differ in length ({} and {})",
            a.len(),
            b.len()
        )));
    }
    let metric = if ctx.len() > 2 {
        match ctx.get_raw(2) {
            ValueRef::Text(t) => Metric::parse(&String::from_utf8_lossy(t))?,
            other => {
                return Err(Error::invalid(format!(
                    "vec_distance(metric): expected TEXT, got {}",
                    type_name(&other)
                )));
            }
        }
    } else {
        Metric::Cosine
    };
    vector::check(&a, Some(metric), "vec_distance(a)")?;
    vector::check(&b, Some(metric), "vec_distance(b)")?;
    Ok(Some(metric.distance(&a, &b) as f64))
}

/// `subcog_fts_query(text)` -> the FTS5 query hybrid search builds from free text.
fn fts_query(ctx: &Context<'_>) -> Result<Option<String>> {
    match ctx.get_raw(0) {
        ValueRef::Text(t) => Ok(text::fts_query(&String::from_utf8_lossy(t))),
        ValueRef::Null => Ok(None),
        other => Err(Error::invalid(format!(
            "subcog_fts_query(text): expected TEXT, got {}",
            type_name(&other)
        ))),
    }
}

/// `subcog_integrity(table)` -> JSON report of [`crate::store::integrity::check`].
fn integrity(ctx: &Context<'_>) -> Result<String> {
    let name = match ctx.get_raw(0) {
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        other => {
            return Err(Error::invalid(format!(
                "subcog_integrity(table): expected the table name as TEXT, got {}",
                type_name(&other)
            )));
        }
    };
    // SAFETY: the connection running this function; `from_handle` does not take ownership.
    let conn = unsafe {
        let c = ctx.get_connection()?;
        Connection::from_handle(c.handle())?
    };
    Ok(crate::store::integrity::check(conn, &name)?.to_string())
}

/// `subcog_config(key)` -> the setting's current value; `subcog_config(key, n)` sets it
/// (for the whole process, every connection) and returns the new value. The settings are
/// [`settings::SETTINGS`]:
///
/// * `embed_cache_size`: entries of the embedding cache (0 = off; default 4096 or
///   `SUBCOG_EMBED_CACHE`);
/// * `embed_threads`: ONNX Runtime intra-op threads (0 = default: `SUBCOG_THREADS`, else
///   min(2, cores)); a loaded model is reloaded with the new count (~0.3 s);
/// * `index_threads`: threads that build the HNSW graph at a checkpoint (0 = default:
///   `SUBCOG_INDEX_THREADS`, else min(4, cores)).
///
/// Each has a maximum ([`settings::Setting::max`]): the threads at most
/// [`settings::THREADS_PER_CORE`] x the available cores, the cache at most
/// [`settings::MAX_EMBED_CACHE`] entries (~256 MiB).
///
/// # Errors
/// Unknown key (naming the known ones), a value that is not an integer in `0..=max`
/// (naming the setting, the range and the value), or a model that fails to reload.
fn config(ctx: &Context<'_>) -> Result<i64> {
    let key = match ctx.get_raw(0) {
        ValueRef::Text(t) => String::from_utf8_lossy(t).to_ascii_lowercase(),
        other => {
            return Err(Error::invalid(format!(
                "subcog_config(key): expected TEXT, got {}",
                type_name(&other)
            )));
        }
    };
    let setting = settings::find(&key).ok_or_else(|| {
        Error::invalid(format!(
            "subcog_config(key): expected one of {}, got '{key}'",
            settings::keys()
        ))
    })?;
    if ctx.len() > 1 {
        let max = (setting.max)();
        let n = match ctx.get_raw(1) {
            ValueRef::Integer(i) if i >= 0 && (i as u64) <= max as u64 => i as usize,
            ValueRef::Integer(i) => {
                return Err(Error::invalid(format!(
                    "subcog_config('{key}', value): expected an integer in 0..={max} ({}), got {i}",
                    setting_bound(setting.key)
                )));
            }
            other => {
                return Err(Error::invalid(format!(
                    "subcog_config('{key}', value): expected an INTEGER, got {}",
                    type_name(&other)
                )));
            }
        };
        (setting.set)(n)?;
    }
    Ok((setting.get)() as i64)
}

/// Why a setting's maximum is what it is, for the error message.
fn setting_bound(key: &str) -> String {
    if key == "embed_cache_size" {
        format!(
            "at most {} MiB of ~{} B entries",
            settings::MAX_EMBED_CACHE_BYTES >> 20,
            settings::EMBED_CACHE_ENTRY_BYTES
        )
    } else {
        format!(
            "at most {} threads per available core",
            settings::THREADS_PER_CORE
        )
    }
}

/// `subcog_info()` -> JSON: version, model, dimension, file locations, whether they
/// exist, whether the model is loaded in this process, the thread counts, the embedding
/// cache (`embed_cache`: capacity, entries, hits, misses) and the host's SQLite version.
fn info(_ctx: &Context<'_>) -> Result<String> {
    let loaded = embedder::loaded();
    let cache = embedder::cache_stats();
    let paths = loaded
        .as_ref()
        .map(|e| e.paths().clone())
        .unwrap_or_else(embedder::ModelPaths::from_env);
    let v = serde_json::json!({
        "version": VERSION,
        "model": embedder::MODEL_NAME,
        "dim": embedder::MODEL_DIM,
        "max_tokens": embedder::MAX_TOKENS,
        "model_path": paths.model.display().to_string(),
        "model_present": paths.model.is_file(),
        "tokenizer_path": paths.tokenizer.display().to_string(),
        "runtime_path": paths.runtime.display().to_string(),
        "runtime_present": paths.runtime.is_file(),
        "model_loaded": loaded.is_some(),
        "embed_threads": loaded.as_ref().map_or_else(settings::embed_threads, |e| e.session_threads()),
        "index_threads": settings::index_threads(),
        "embed_cache": {
            "capacity": cache.capacity,
            "entries": cache.entries,
            "hits": cache.hits,
            "misses": cache.misses,
        },
        "sqlite_version": crate::host_sqlite_version(),
    });
    Ok(v.to_string())
}
