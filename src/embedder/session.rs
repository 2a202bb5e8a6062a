//! ONNX Runtime: opening the library, creating sessions, and one inference run (tokenize,
//! pad, run, mean-pool, normalise).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::{MODEL_DIM, ModelPaths};
use crate::error::{Error, Result};

/// Creates an ONNX session for `paths.model` with `threads` intra-op threads and full graph
/// optimisation (off, inference is 5-6x slower: field notes).
///
/// # Errors
/// [`Error::Model`] if ONNX Runtime or the model fails to load.
pub(super) fn new_session(paths: &ModelPaths, threads: usize) -> Result<Session> {
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

/// Tokenizes `texts`, pads them to the longest, runs the model and pools: one unit-norm
/// `[f32; 384]` per text, in order.
///
/// # Errors
/// [`Error::Inference`] if tokenization or the ONNX run fails, or the output has another
/// shape than `[batch, seq, 384]`.
pub(super) fn run(
    tokenizer: &Tokenizer,
    session: &Mutex<Session>,
    texts: &[&str],
) -> Result<Vec<Vec<f32>>> {
    let inf = |e: &dyn std::fmt::Display| Error::Inference(e.to_string());
    let encodings: Vec<_> = texts
        .iter()
        .map(|t| tokenizer.encode(*t, true).map_err(|e| inf(&e)))
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
    let mut session = session
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

/// Mean of the token vectors of one sequence, weighted by the attention mask.
///
/// `hidden` is `[seq, dim]` row-major, `mask` is `[seq]` (1 = real token, 0 = padding).
/// Returns `[dim]`; all zeros when the mask is all zero.
pub(crate) fn mean_pool(hidden: &[f32], mask: &[i64], dim: usize) -> Vec<f32> {
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
pub(crate) fn normalize(mut v: Vec<f32>) -> Vec<f32> {
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
    fn normalize_gives_unit_norm() {
        let v = normalize(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
