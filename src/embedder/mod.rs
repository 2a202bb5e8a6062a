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
//!
//! Files: `paths.rs` (where the files are, [`ModelPaths`]), `session.rs` (ONNX Runtime and
//! one inference run), `cache.rs` (the process-wide embedding cache, [`cache_stats`]); this
//! one: the shared [`Embedder`]. Its thread count and the cache's size are settings
//! (`crate::settings`).

mod cache;
mod paths;
mod session;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::Session;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::settings;

pub(crate) use cache::{cache_stats, set_cache_size};
pub(crate) use paths::ModelPaths;
pub use paths::subcog_home;

/// Output dimension of all-MiniLM-L6-v2.
pub const MODEL_DIM: usize = 384;
/// Maximum sequence length, in tokens including `[CLS]` and `[SEP]`, that the model was
/// trained with (sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2).
pub(crate) const MAX_TOKENS: usize = 256;
/// Name reported by `subcog_info()`.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2 (int8 ONNX)";
/// Texts per ONNX run in [`Embedder::embed_batch`]. Measured with `benches/bench_embed.py`
/// on 2 cores (2 intra-op threads, length-sorted batches): 4-16 were best (1.2-1.5x the
/// throughput of one text per run), 32 less so, 64 no better than 1.
const BATCH: usize = 16;
/// Texts are cut to this many characters before tokenization. 256 WordPiece tokens cover
/// at most 256 words of at most 100 characters (the tokenizer's `max_input_chars_per_word`)
/// plus separators, so only pathological runs of whitespace could reach past it; without
/// the cut a 1 MB text costs ~0.8 s to tokenize.
pub(crate) const MAX_CHARS: usize = 32 * 1024;

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
pub(crate) fn loaded() -> Option<Arc<Embedder>> {
    EMBEDDER.get().and_then(|r| r.as_ref().ok().cloned())
}

/// Sets the intra-op thread count of ONNX Runtime (0 = back to the default, see
/// [`settings::embed_threads`]) and applies it to the loaded session, if any.
///
/// # Errors
/// [`Error::Model`] if the session fails to reload with the new count.
pub(crate) fn set_threads(n: usize) -> Result<()> {
    settings::set_embed_threads(n);
    match loaded() {
        Some(e) => e.set_threads(settings::embed_threads()),
        None => Ok(()),
    }
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
        let n = settings::embed_threads();
        let session = session::new_session(&paths, n)?;
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
    pub(crate) fn session_threads(&self) -> usize {
        self.session_threads.load(Ordering::Relaxed)
    }

    /// Recreates the ONNX session with `n` intra-op threads (~0.3 s) unless it has them.
    ///
    /// # Errors
    /// [`Error::Model`] if the new session fails to load (the old one is kept).
    pub(crate) fn set_threads(&self, n: usize) -> Result<()> {
        if n == self.session_threads() {
            return Ok(());
        }
        let session = session::new_session(&self.paths, n)?;
        let mut g = self
            .session
            .lock()
            .map_err(|_| Error::Inference("session lock poisoned".into()))?;
        *g = session;
        self.session_threads.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Number of WordPiece tokens of `text` under the model's own tokenizer, without the
    /// special tokens (`[CLS]`, `[SEP]`) and without truncation (tokens past the model's
    /// 256 are counted too): the unit of `subcog_context`'s budget.
    ///
    /// # Errors
    /// [`Error::Inference`] if the tokenizer fails.
    pub(crate) fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Inference(format!("tokenizing: {e}")))?;
        // The tokenizer truncates at MAX_TOKENS (stride 0): the rest is in `overflowing`.
        Ok(enc.len() + enc.get_overflowing().iter().map(|o| o.len()).sum::<usize>())
    }

    /// The files this embedder was loaded from.
    pub(crate) fn paths(&self) -> &ModelPaths {
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
        let keys: Vec<cache::Key> = texts
            .iter()
            .map(|t| cache::key(&self.model_tag, t))
            .collect();
        let mut out = cache::lookup(&keys);
        let mut todo: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        // Similar lengths share a batch, so little is spent on padding.
        todo.sort_by_key(|&i| texts[i].len());
        for chunk in todo.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vecs: Vec<Arc<[f32]>> = session::run(&self.tokenizer, &self.session, &batch)?
                .into_iter()
                .map(Arc::from)
                .collect();
            cache::insert(chunk.iter().map(|&i| &keys[i]).zip(&vecs));
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| Error::Inference("missing output".into())))
            .collect()
    }
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

/// The longest prefix of `s` with at most `max` characters.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }
}
