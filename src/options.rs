//! Options of `CREATE VIRTUAL TABLE ... USING memories(key=value, ...)`.

use crate::embedder::MODEL_DIM;
use crate::error::{Error, Result};
use crate::vector::Metric;

/// Parsed table options. Stored in the `<table>_config` shadow table at CREATE and read
/// back at connect, so a table keeps the options it was created with.
#[derive(Debug, Clone, PartialEq)]
pub struct TableOptions {
    /// Vector dimension (number of float32 per embedding). Default: the model's, 384.
    pub dim: usize,
    /// Distance metric. Default cosine.
    pub metric: Metric,
    /// HNSW connectivity `M` (edges per node per layer). Default 16 (Malkov & Yashunin 2016
    /// recommend 5..48; 16 is usearch's and hnswlib's default).
    pub m: usize,
    /// HNSW `ef_construction`: candidate list size while inserting. Default 128.
    pub ef_construction: usize,
    /// HNSW `ef_search`: candidate list size while searching (raised to `k` when smaller).
    /// Default 64.
    pub ef_search: usize,
    /// Compute `embedding` from `content` with the model when no embedding is supplied.
    /// Default on when `dim` is the model's dimension, else off.
    pub auto_embed: bool,
    /// Searches over at most this many vectors (a whole table, or one namespace) are exact
    /// brute-force scans instead of HNSW. Default 2048.
    pub exact_max: usize,

    // ---- hybrid search (fusion and context; see `crate::search::hybrid`) ----
    /// Hybrid search takes each retriever's top `max(k, hybrid_depth)` rows as candidates.
    /// Default 10 (on LoCoMo 10 beat 20 and 50 at the default weights, BENCHMARKS.md).
    pub hybrid_depth: usize,
    /// Weight of the keyword side in hybrid search's own score of a row:
    /// `w * bm25 / best bm25 + (1 - w) * cosine similarity`, in 0..=1. Default 0.4
    /// (chosen by leave-one-conversation-out on LoCoMo, BENCHMARKS.md).
    pub hybrid_keyword_weight: f64,
    /// Weight of the best neighbouring memory's own score added to a row's score in hybrid
    /// search (0 turns neighbour context off). Default 0.5.
    pub hybrid_context_weight: f64,
    /// Neighbours of a memory for hybrid search's context: the memories stored just before
    /// and after it in its namespace (by id), this many on each side (0 = off). Default 2.
    pub hybrid_context_window: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            dim: MODEL_DIM,
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 128,
            ef_search: 64,
            auto_embed: true,
            exact_max: 2048,
            hybrid_depth: 10,
            hybrid_keyword_weight: 0.4,
            hybrid_context_weight: 0.5,
            hybrid_context_window: 2,
        }
    }
}

/// The option names accepted in CREATE, for error messages.
pub const OPTION_NAMES: &str = "dim, metric, m, ef_construction, ef_search, auto_embed, exact_max, \
     hybrid_depth, hybrid_keyword_weight, hybrid_context_weight, hybrid_context_window";

impl TableOptions {
    /// Parses the module arguments of CREATE VIRTUAL TABLE (each `key=value`, values may
    /// be quoted).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown key, a missing `=`, a value of the wrong type or out
    /// of range, or `auto_embed=on` with a dimension other than the model's.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self> {
        let mut o = TableOptions::default();
        let mut auto_embed: Option<bool> = None;
        for raw in args {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let (key, value) = raw.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "memories option '{raw}': expected key=value with key one of {OPTION_NAMES}"
                ))
            })?;
            let key = key.trim().to_ascii_lowercase();
            let value = unquote(value.trim());
            match key.as_str() {
                "dim" | "dimensions" => o.dim = int(&key, &value, 1, 8192)?,
                "metric" | "distance_metric" => o.metric = Metric::parse(&value)?,
                "m" | "connectivity" => o.m = int(&key, &value, 2, 256)?,
                "ef_construction" => o.ef_construction = int(&key, &value, 1, 4096)?,
                "ef_search" => o.ef_search = int(&key, &value, 1, 4096)?,
                "exact_max" => o.exact_max = int(&key, &value, 0, 10_000_000)?,
                "auto_embed" => auto_embed = Some(boolean(&key, &value)?),
                // ---- hybrid search ----
                "hybrid_depth" => o.hybrid_depth = int(&key, &value, 1, 4096)?,
                "hybrid_keyword_weight" => o.hybrid_keyword_weight = real(&key, &value, 0.0, 1.0)?,
                "hybrid_context_weight" => o.hybrid_context_weight = real(&key, &value, 0.0, 10.0)?,
                "hybrid_context_window" => o.hybrid_context_window = int(&key, &value, 0, 64)?,
                _ => {
                    return Err(Error::invalid(format!(
                        "memories: unknown option '{key}'; expected one of {OPTION_NAMES}"
                    )));
                }
            }
        }
        o.auto_embed = match auto_embed {
            Some(true) if o.dim != MODEL_DIM => {
                return Err(Error::invalid(format!(
                    "memories: auto_embed=on needs dim={MODEL_DIM} (the model's dimension), got dim={}",
                    o.dim
                )));
            }
            Some(v) => v,
            None => o.dim == MODEL_DIM,
        };
        Ok(o)
    }

    /// The options as `key=value` pairs, in the form [`TableOptions::parse`] reads.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("dim", self.dim.to_string()),
            ("metric", self.metric.name().to_string()),
            ("m", self.m.to_string()),
            ("ef_construction", self.ef_construction.to_string()),
            ("ef_search", self.ef_search.to_string()),
            (
                "auto_embed",
                if self.auto_embed { "on" } else { "off" }.to_string(),
            ),
            ("exact_max", self.exact_max.to_string()),
            // ---- hybrid search ----
            ("hybrid_depth", self.hybrid_depth.to_string()),
            (
                "hybrid_keyword_weight",
                self.hybrid_keyword_weight.to_string(),
            ),
            (
                "hybrid_context_weight",
                self.hybrid_context_weight.to_string(),
            ),
            (
                "hybrid_context_window",
                self.hybrid_context_window.to_string(),
            ),
        ]
    }
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2
        && ((b[0] == b'\'' && b[b.len() - 1] == b'\'') || (b[0] == b'"' && b[b.len() - 1] == b'"'))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn int(key: &str, value: &str, min: usize, max: usize) -> Result<usize> {
    let n: i64 = value.parse().map_err(|_| {
        Error::invalid(format!(
            "memories option {key}: expected an integer in {min}..={max}, got '{value}'"
        ))
    })?;
    if n < min as i64 || n > max as i64 {
        return Err(Error::invalid(format!(
            "memories option {key}: expected an integer in {min}..={max}, got {n}"
        )));
    }
    Ok(n as usize)
}

/// A real number in `min..=max` (finite).
fn real(key: &str, value: &str, min: f64, max: f64) -> Result<f64> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => Err(Error::invalid(format!(
            "memories option {key}: expected a number in {min}..={max}, got '{value}'"
        ))),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(Error::invalid(format!(
            "memories option {key}: expected on or off, got '{value}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = TableOptions::parse::<&str>(&[]).unwrap_or_default();
        assert_eq!(o, TableOptions::default());
        assert!(o.auto_embed);
    }

    #[test]
    fn parses_all() {
        let o = TableOptions::parse(&[
            "dim=8",
            "metric='l2'",
            "m=32",
            "ef_construction=200",
            "ef_search = 100",
            "auto_embed=off",
            "exact_max=0",
            "hybrid_depth=20",
            "hybrid_keyword_weight=0.25",
            "hybrid_context_weight=0",
            "hybrid_context_window=3",
        ])
        .unwrap_or_default();
        assert_eq!(o.dim, 8);
        assert_eq!(o.metric, Metric::L2);
        assert_eq!((o.m, o.ef_construction, o.ef_search), (32, 200, 100));
        assert!(!o.auto_embed);
        assert_eq!(o.exact_max, 0);
        assert_eq!(o.hybrid_depth, 20);
        assert_eq!(o.hybrid_keyword_weight, 0.25);
        assert_eq!(o.hybrid_context_weight, 0.0);
        assert_eq!(o.hybrid_context_window, 3);
        assert_eq!(
            TableOptions::parse(
                &o.to_pairs()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            )
            .ok(),
            Some(o)
        );
    }

    #[test]
    fn other_dim_turns_auto_embed_off() {
        let o = TableOptions::parse(&["dim=4"]).unwrap_or_default();
        assert!(!o.auto_embed);
        assert!(TableOptions::parse(&["dim=4", "auto_embed=on"]).is_err());
    }

    #[test]
    fn errors_name_the_option() {
        let msg = |a: &[&str]| {
            TableOptions::parse(a)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(msg(&["colour=red"]).contains("unknown option 'colour'"));
        assert!(msg(&["dim=0"]).contains("dim"));
        assert!(msg(&["dim=abc"]).contains("'abc'"));
        assert!(msg(&["metric=hamming"]).contains("cosine, l2, ip"));
        assert!(msg(&["auto_embed=maybe"]).contains("on or off"));
        assert!(msg(&["justaword"]).contains("key=value"));
        assert!(msg(&["hybrid_keyword_weight=1.5"]).contains("0..=1"));
        assert!(msg(&["hybrid_context_weight=nan"]).contains("hybrid_context_weight"));
        assert!(msg(&["hybrid_depth=0"]).contains("hybrid_depth"));
    }
}
