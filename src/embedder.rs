//! Sentence embeddings with all-MiniLM-L6-v2 through ONNX Runtime, inside the host process.
//!
//! Pipeline (sentence-transformers' recipe for this model): WordPiece tokenization with
//! `[CLS]`/`[SEP]`, truncated to 256 tokens; one ONNX run giving `last_hidden_state`
//! `[batch, seq, 384]`; mean pooling of the token vectors weighted by the attention mask;
//! division by the L2 norm. The result is a unit-norm `[f32; 384]`.
//!
//! The ONNX Runtime library is opened at run time (`ort`'s `load-dynamic`), and the
//! session is created lazily on the first call, once per process, and shared by every
//! connection behind a mutex. Nothing is downloaded: [`ModelPaths`] says where
//! `make setup` put the files.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// Output dimension of all-MiniLM-L6-v2.
pub const MODEL_DIM: usize = 384;
/// Maximum sequence length, in tokens including `[CLS]` and `[SEP]`, that the model was
/// trained with (sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2).
pub const MAX_TOKENS: usize = 256;
/// Name reported by `subcog_info()`.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2 (int8 ONNX)";
/// File name of the ONNX Runtime shared library installed by `make setup`.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";
/// Texts per ONNX run in [`Embedder::embed_batch`]. Measured with `benches/bench_embed.py`
/// on 2 cores (2 intra-op threads, length-sorted batches): 4-16 were best (1.2-1.5x the
/// throughput of one text per run), 32 less so, 64 no better than 1.
const BATCH: usize = 16;
/// Default number of entries in the process-wide embedding cache (SHA-256 of model tag and
/// text -> vector), ~1.6 KB each, so ~6.5 MB when full. `SUBCOG_EMBED_CACHE` (read when the
/// cache is first used) or `subcog_config('embed_cache_size', n)` changes it; 0 disables it.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
/// Texts are cut to this many characters before tokenization. 256 WordPiece tokens cover
/// at most 256 words of at most 100 characters (the tokenizer's `max_input_chars_per_word`)
/// plus separators, so only pathological runs of whitespace could reach past it; without
/// the cut a 1 MB text costs ~0.8 s to tokenize.
pub const MAX_CHARS: usize = 32 * 1024;

/// Where the model and the runtime are looked for.
///
/// * `SUBCOG_HOME` (default `$XDG_DATA_HOME/subcog`, else `~/.local/share/subcog`) is the
///   install root of `make setup`;
/// * `SUBCOG_MODEL_DIR` (default `$SUBCOG_HOME/models/all-MiniLM-L6-v2`) holds
///   `model.onnx` and `tokenizer.json`;
/// * `SUBCOG_ORT_LIB`, then `ORT_DYLIB_PATH` (default
///   `$SUBCOG_HOME/lib/libonnxruntime.so.1.31.1`) is the ONNX Runtime library.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    /// `model.onnx`.
    pub model: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// ONNX Runtime shared library.
    pub runtime: PathBuf,
}

/// A non-empty environment variable as a path.
fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The per-user directory of `make setup` (and of the `subcog` binary's default database):
/// `$SUBCOG_HOME`, else `$XDG_DATA_HOME/subcog`, else `~/.local/share/subcog`.
pub fn subcog_home() -> PathBuf {
    env_path("SUBCOG_HOME").unwrap_or_else(|| {
        env_path("XDG_DATA_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("subcog")
    })
}

impl ModelPaths {
    /// Resolves the paths from the environment (read on every call).
    pub fn from_env() -> Self {
        let home = subcog_home();
        let env = env_path;
        let model_dir =
            env("SUBCOG_MODEL_DIR").unwrap_or_else(|| home.join("models/all-MiniLM-L6-v2"));
        let runtime = env("SUBCOG_ORT_LIB")
            .or_else(|| env("ORT_DYLIB_PATH"))
            .unwrap_or_else(|| home.join("lib").join(ORT_LIB_NAME));
        ModelPaths {
            model: model_dir.join("model.onnx"),
            tokenizer: model_dir.join("tokenizer.json"),
            runtime,
        }
    }

    fn check(&self) -> Result<()> {
        for (what, p) in [
            ("the embedding model", &self.model),
            ("the tokenizer", &self.tokenizer),
            ("the ONNX Runtime library", &self.runtime),
        ] {
            if !p.is_file() {
                return Err(Error::Model(format!(
                    "{what} is not installed: {} not found. Run `make setup` in the subcog \
                     repository (scripts/setup.sh), or point SUBCOG_MODEL_DIR / SUBCOG_ORT_LIB \
                     at existing files",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// A loaded model: tokenizer plus ONNX session.
pub struct Embedder {
    tokenizer: Tokenizer,
    session: Mutex<Session>,
    /// Intra-op threads of `session`.
    session_threads: AtomicUsize,
    paths: ModelPaths,
    /// Identifies the model in cache keys: SHA-256 of the model file's path, length and
    /// modification time (a changed or different model never reuses cached vectors).
    model_tag: [u8; 32],
}

/// The process-wide embedding cache: an LRU map from SHA-256(model tag, text) to the
/// embedding, with hit and miss counters (shown by `subcog_info()`).
struct EmbedCache {
    /// `None` when the configured size is 0 (cache off).
    lru: Option<LruCache<[u8; 32], Arc<[f32]>>>,
}

static CACHE: Mutex<Option<EmbedCache>> = Mutex::new(None);
static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
static CACHE_MISSES: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on the cache, creating it on first use with `SUBCOG_EMBED_CACHE` entries
/// (default [`DEFAULT_CACHE_ENTRIES`]). `None` if the lock is poisoned.
fn with_cache<T>(f: impl FnOnce(&mut EmbedCache) -> T) -> Option<T> {
    let mut g = CACHE.lock().ok()?;
    let c = g.get_or_insert_with(|| {
        let n = std::env::var("SUBCOG_EMBED_CACHE")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_CACHE_ENTRIES);
        EmbedCache {
            lru: NonZeroUsize::new(n).map(LruCache::new),
        }
    });
    Some(f(c))
}

/// Embedding-cache statistics, as reported by `subcog_info()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Maximum number of entries (0 = cache off).
    pub capacity: usize,
    /// Entries held now.
    pub entries: usize,
    /// Texts served from the cache since the process loaded the extension.
    pub hits: u64,
    /// Texts that had to be run through the model.
    pub misses: u64,
}

/// Current statistics of the process-wide embedding cache.
pub fn cache_stats() -> CacheStats {
    let (capacity, entries) =
        with_cache(|c| c.lru.as_ref().map_or((0, 0), |l| (l.cap().get(), l.len())))
            .unwrap_or((0, 0));
    CacheStats {
        capacity,
        entries,
        hits: CACHE_HITS.load(Ordering::Relaxed),
        misses: CACHE_MISSES.load(Ordering::Relaxed),
    }
}

/// Resizes the process-wide embedding cache to `entries` (0 turns it off and empties it;
/// shrinking drops the least recently used entries).
pub fn set_cache_size(entries: usize) {
    with_cache(|c| match (NonZeroUsize::new(entries), c.lru.as_mut()) {
        (None, _) => c.lru = None,
        (Some(n), Some(l)) => l.resize(n),
        (Some(n), None) => c.lru = Some(LruCache::new(n)),
    });
}

/// Intra-op threads for ONNX Runtime sessions created from now on, 0 = the default
/// (`SUBCOG_THREADS`, else min(2, available cores)).
static THREADS_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// The process-wide embedder: `None` until first use; a load failure of ONNX Runtime
/// itself is kept (ONNX Runtime cannot be initialised twice in one process), while
/// missing files are re-checked on every call so that `make setup` after loading works.
static EMBEDDER: OnceLock<std::result::Result<Arc<Embedder>, String>> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Returns the shared embedder, loading it on first use (~0.3 s).
///
/// # Errors
/// [`Error::Model`] if a file is missing (with the command that installs it) or ONNX
/// Runtime / the model fails to load.
pub fn get() -> Result<Arc<Embedder>> {
    if let Some(r) = EMBEDDER.get() {
        return r.clone().map_err(Error::Model);
    }
    let _lock = INIT_LOCK
        .lock()
        .map_err(|_| Error::Model("embedder lock poisoned".into()))?;
    if let Some(r) = EMBEDDER.get() {
        return r.clone().map_err(Error::Model);
    }
    let paths = ModelPaths::from_env();
    paths.check()?;
    let loaded = Embedder::load(paths)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    let r = EMBEDDER.get_or_init(|| loaded);
    r.clone().map_err(Error::Model)
}

/// The embedder if it is already loaded (never loads it).
pub fn loaded() -> Option<Arc<Embedder>> {
    EMBEDDER.get().and_then(|r| r.as_ref().ok().cloned())
}

/// Intra-op threads of the ONNX Runtime session: `subcog_config('embed_threads', n)` if
/// set, else `SUBCOG_THREADS`, else min(2, available cores). Two, not all cores, because the
/// library lives inside someone else's process; two were ~1.4x faster than one on this
/// model (field notes).
pub fn threads() -> usize {
    let o = THREADS_OVERRIDE.load(Ordering::Relaxed);
    if o > 0 {
        return o;
    }
    std::env::var("SUBCOG_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(2))
                .unwrap_or(1)
        })
}

impl Embedder {
    fn load(paths: ModelPaths) -> Result<Self> {
        let model_err =
            |what: &str, e: &dyn std::fmt::Display| Error::Model(format!("loading {what}: {e}"));
        let mut tokenizer = Tokenizer::from_file(&paths.tokenizer)
            .map_err(|e| model_err(&paths.tokenizer.display().to_string(), &e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| model_err("tokenizer truncation", &e))?;
        let n = threads();
        let session = new_session(&paths, n)?;
        let model_tag = model_tag(&paths.model);
        Ok(Embedder {
            tokenizer,
            session: Mutex::new(session),
            session_threads: AtomicUsize::new(n),
            paths,
            model_tag,
        })
    }

    /// Intra-op threads of the current session.
    pub fn session_threads(&self) -> usize {
        self.session_threads.load(Ordering::Relaxed)
    }

    /// Recreates the ONNX session with `n` intra-op threads (~0.3 s) unless it has them.
    ///
    /// # Errors
    /// [`Error::Model`] if the new session fails to load (the old one is kept).
    pub fn set_threads(&self, n: usize) -> Result<()> {
        if n == self.session_threads() {
            return Ok(());
        }
        let session = new_session(&self.paths, n)?;
        let mut g = self
            .session
            .lock()
            .map_err(|_| Error::Inference("session lock poisoned".into()))?;
        *g = session;
        self.session_threads.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// The files this embedder was loaded from.
    pub fn paths(&self) -> &ModelPaths {
        &self.paths
    }

    /// Embeds one text: a unit-norm `[f32; 384]` (see the module docs for the pipeline).
    ///
    /// # Errors
    /// [`Error::Inference`] if tokenization or the ONNX run fails.
    pub fn embed(&self, text: &str) -> Result<Arc<[f32]>> {
        let mut v = self.embed_batch(&[text])?;
        v.pop().ok_or_else(|| Error::Inference("no output".into()))
    }

    /// Embeds many texts, `BATCH` per ONNX run, consulting the cache first.
    /// Output `i` is the embedding of `texts[i]`.
    ///
    /// # Errors
    /// [`Error::Inference`] if tokenization or an ONNX run fails.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>> {
        let texts: Vec<&str> = texts.iter().map(|t| truncate_chars(t, MAX_CHARS)).collect();
        let keys: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| {
                Sha256::new()
                    .chain_update(self.model_tag)
                    .chain_update(t.as_bytes())
                    .finalize()
                    .into()
            })
            .collect();
        let mut out: Vec<Option<Arc<[f32]>>> = vec![None; texts.len()];
        let mut todo: Vec<usize> = Vec::new();
        let looked_up = with_cache(|c| match c.lru.as_mut() {
            Some(lru) => {
                for (i, key) in keys.iter().enumerate() {
                    match lru.get(key) {
                        Some(v) => out[i] = Some(v.clone()),
                        None => todo.push(i),
                    }
                }
            }
            None => todo.extend(0..texts.len()),
        });
        if looked_up.is_none() {
            todo = (0..texts.len()).collect();
        }
        CACHE_HITS.fetch_add((texts.len() - todo.len()) as u64, Ordering::Relaxed);
        CACHE_MISSES.fetch_add(todo.len() as u64, Ordering::Relaxed);
        // Similar lengths share a batch, so little is spent on padding.
        todo.sort_by_key(|&i| texts[i].len());
        for chunk in todo.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vecs: Vec<Arc<[f32]>> = self.run(&batch)?.into_iter().map(Arc::from).collect();
            with_cache(|c| {
                if let Some(lru) = c.lru.as_mut() {
                    for (&i, v) in chunk.iter().zip(&vecs) {
                        lru.put(keys[i], v.clone());
                    }
                }
            });
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| Error::Inference("missing output".into())))
            .collect()
    }

    /// Tokenizes, pads to the longest text of the batch, runs the model and pools.
    fn run(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let inf = |e: &dyn std::fmt::Display| Error::Inference(e.to_string());
        let encodings: Vec<_> = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true).map_err(|e| inf(&e)))
            .collect::<Result<_>>()?;
        let batch = encodings.len();
        let seq = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        for (b, e) in encodings.iter().enumerate() {
            for (j, ((&id, &m), &t)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                ids[b * seq + j] = id as i64;
                mask[b * seq + j] = m as i64;
                types[b * seq + j] = t as i64;
            }
        }
        let shape = [batch, seq];
        let t_ids = Tensor::from_array((shape, ids)).map_err(|e| inf(&e))?;
        let t_mask = Tensor::from_array((shape, mask.clone())).map_err(|e| inf(&e))?;
        let t_types = Tensor::from_array((shape, types)).map_err(|e| inf(&e))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::Inference("session lock poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![
                "input_ids" => t_ids,
                "attention_mask" => t_mask,
                "token_type_ids" => t_types,
            ])
            .map_err(|e| inf(&e))?;
        let (out_shape, hidden) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|e| inf(&e))?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        if dims != [batch as i64, seq as i64, MODEL_DIM as i64] {
            return Err(Error::Inference(format!(
                "unexpected output shape {dims:?}, expected [{batch}, {seq}, {MODEL_DIM}]"
            )));
        }
        Ok((0..batch)
            .map(|b| {
                let h = &hidden[b * seq * MODEL_DIM..(b + 1) * seq * MODEL_DIM];
                let m = &mask[b * seq..(b + 1) * seq];
                normalize(mean_pool(h, m, MODEL_DIM))
            })
            .collect())
    }
}

/// Creates an ONNX session for `paths.model` with `threads` intra-op threads and full graph
/// optimisation (off, inference is 5-6x slower: field notes).
fn new_session(paths: &ModelPaths, threads: usize) -> Result<Session> {
    let what = paths.model.display().to_string();
    let err = |e: &dyn std::fmt::Display| Error::Model(format!("loading {what}: {e}"));
    let env = ensure_runtime(&paths.runtime)?;
    Session::builder(env)
        .map_err(|e| err(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(&e))?
        .with_intra_threads(threads)
        .map_err(|e| err(&e))?
        .with_inter_threads(1)
        .map_err(|e| err(&e))?
        .commit_from_file(&paths.model)
        .map_err(|e| err(&e))
}

/// SHA-256 of the model file's path, length and modification time: the model part of the
/// embedding cache's keys.
fn model_tag(model: &Path) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(model.as_os_str().as_encoded_bytes());
    if let Ok(m) = std::fs::metadata(model) {
        h.update(m.len().to_le_bytes());
        if let Ok(t) = m.modified().and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_err(std::io::Error::other)
        }) {
            h.update(t.as_nanos().to_le_bytes());
        }
    }
    h.finalize().into()
}

/// Sets the intra-op thread count of ONNX Runtime (0 = back to the default, see
/// [`threads`]) and applies it to the loaded session, if any.
///
/// # Errors
/// [`Error::Model`] if the session fails to reload with the new count.
pub fn set_threads(n: usize) -> Result<()> {
    THREADS_OVERRIDE.store(n, Ordering::Relaxed);
    match loaded() {
        Some(e) => e.set_threads(threads()),
        None => Ok(()),
    }
}

/// The longest prefix of `s` with at most `max` characters.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Opens ONNX Runtime once per process.
fn ensure_runtime(path: &Path) -> Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    let r = ENV.get_or_init(|| {
        ort::init_from(path)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))
            .and_then(|b| {
                b.with_name("subcog")
                    .build()
                    .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
            })
    });
    r.as_ref().map_err(|e| Error::Model(e.clone()))
}

/// Mean of the token vectors of one sequence, weighted by the attention mask.
///
/// `hidden` is `[seq, dim]` row-major, `mask` is `[seq]` (1 = real token, 0 = padding).
/// Returns `[dim]`; all zeros when the mask is all zero.
pub fn mean_pool(hidden: &[f32], mask: &[i64], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    let mut count = 0f32;
    for (row, &m) in hidden.chunks_exact(dim).zip(mask) {
        if m == 0 {
            continue;
        }
        let w = m as f32;
        for (s, x) in sum.iter_mut().zip(row) {
            *s += w * x;
        }
        count += w;
    }
    // sentence-transformers clamps the denominator at 1e-9.
    let denom = count.max(1e-9);
    sum.iter_mut().for_each(|s| *s /= denom);
    sum
}

/// Divides `v` by its L2 norm (clamped at 1e-12, as `torch.nn.functional.normalize`).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = crate::vector::norm(&v).max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding() {
        // two real tokens and one padding token, dim 2
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let pooled = mean_pool(&hidden, &[1, 1, 0], 2);
        assert_eq!(pooled, vec![2.0, 3.0]);
    }

    #[test]
    fn pooling_all_masked_is_zero() {
        assert_eq!(mean_pool(&[1.0, 2.0], &[0], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }

    #[test]
    fn normalize_gives_unit_norm() {
        let v = normalize(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn paths_follow_environment() {
        // Only reads the environment; SUBCOG_MODEL_DIR wins over SUBCOG_HOME.
        let p = ModelPaths::from_env();
        assert!(p.model.ends_with("model.onnx"));
        assert!(p.tokenizer.ends_with("tokenizer.json"));
    }
}
