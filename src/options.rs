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
    /// HNSW `ef_construction`: candidate list size while inserting. Default 64 (perf
    /// branch: with ef_search 128, recall@10 0.972 at 100k 384-d vectors vs 0.933 for
    /// 128/64, and 2.3x the insert rate; scripts/perf_targets.py).
    pub ef_construction: usize,
    /// HNSW `ef_search`: candidate list size while searching (raised to `k` when smaller).
    /// Default 128 (see `ef_construction`).
    pub ef_search: usize,
    /// Compute `embedding` from `content` with the model when no embedding is supplied.
    /// Default on when `dim` is the model's dimension, else off.
    pub auto_embed: bool,
    /// Searches over at most this many vectors (a whole table, or one namespace) are exact
    /// brute-force scans instead of HNSW. Default 2048.
    pub exact_max: usize,

    // ---- memory semantics: capture hygiene and ranking (see dedup.rs, redact.rs, rank.rs) ----
    /// What an INSERT of a duplicate does ([`DedupPolicy`]). Default `merge`.
    pub dedup: DedupPolicy,
    /// Cosine similarity at or above which a new memory is a near duplicate of an existing
    /// one in the same namespace: the new memory supersedes it. Default 0.92, from
    /// BENCHMARKS.md "Dedup threshold" (`benches/dedup_threshold.py`): the lowest threshold
    /// at which none of 36 hand-written distinct-fact pairs is superseded and at most 1% of
    /// the LoCoMo questions lose an evidence turn (at 0.92: 31 of 72 corrections and 8 of 36
    /// restatements supersede; 20 of 2,760 LoCoMo turns are superseded).
    /// Only for tables with `metric=cosine`; 1.0 keeps exact duplicates only.
    pub dedup_threshold: f64,
    /// What a secret found in `content`, `tags` or `metadata` does
    /// ([`crate::redact::SecretPolicy`]). Default `redact`.
    pub secrets: crate::redact::SecretPolicy,
    /// Weight of recency in the ranking of searches, 0..=1. Default 0 (off).
    pub recency_weight: f64,
    /// Half-life of the recency decay, milliseconds. Default 30 days.
    pub recency_half_life_ms: i64,
    /// Weight of the `importance` column in the ranking of searches, 0..=1. Default 0 (off).
    pub importance_weight: f64,

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

/// What an INSERT does when its memory duplicates one already in the same namespace
/// (same normalised content, or cosine similarity >= `dedup_threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupPolicy {
    /// Keep the existing memory unchanged; the INSERT lands on it.
    Skip,
    /// Keep the existing memory, merge the new tags (union) and metadata (JSON merge
    /// patch, RFC 7386: new keys win), take the larger importance and refresh
    /// `updated_at`; the INSERT lands on it.
    Merge,
    /// Always insert a new memory (no dedup).
    Off,
}

impl DedupPolicy {
    /// Parses `skip`, `merge` or `off` (also `insert`, `always`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option and the value.
    pub fn parse(v: &str) -> Result<Self> {
        match v.to_ascii_lowercase().as_str() {
            "skip" => Ok(DedupPolicy::Skip),
            "merge" => Ok(DedupPolicy::Merge),
            "off" | "insert" | "always" | "none" => Ok(DedupPolicy::Off),
            _ => Err(Error::invalid(format!(
                "memories option dedup: expected skip, merge or off, got '{v}'"
            ))),
        }
    }

    /// The option value naming this policy.
    pub fn name(self) -> &'static str {
        match self {
            DedupPolicy::Skip => "skip",
            DedupPolicy::Merge => "merge",
            DedupPolicy::Off => "off",
        }
    }
}

/// Parses a duration: a number with an optional unit `ms`, `s`, `m`, `h`, `d` or `w`
/// (no unit: seconds). Returns milliseconds.
///
/// # Errors
/// [`Error::Invalid`] naming `what` for anything else, or a negative or absurd duration.
pub fn parse_duration_ms(what: &str, v: &str) -> Result<i64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => 1.0,
        "" | "s" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3_600e3,
        "d" => 86_400e3,
        "w" => 604_800e3,
        _ => f64::NAN,
    };
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    let ms = n * scale;
    if !ms.is_finite() || ms <= 0.0 || ms > 1e15 {
        return Err(Error::invalid(format!(
            "{what}: expected a positive duration such as 3600, 90s, 30m, 12h, 7d or 2w, got '{v}'"
        )));
    }
    Ok(ms.round() as i64)
}

fn fraction(key: &str, value: &str) -> Result<f64> {
    let x: f64 = value.parse().unwrap_or(f64::NAN);
    if !(0.0..=1.0).contains(&x) {
        return Err(Error::invalid(format!(
            "memories option {key}: expected a number in 0..=1, got '{value}'"
        )));
    }
    Ok(x)
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            dim: MODEL_DIM,
            metric: Metric::Cosine,
            m: 16,
            // perf branch: defaults measured at 100k (see the field docs).
            ef_construction: 64,
            ef_search: 128,
            auto_embed: true,
            exact_max: 2048,
            dedup: DedupPolicy::Merge,
            dedup_threshold: 0.92,
            secrets: crate::redact::SecretPolicy::Redact,
            recency_weight: 0.0,
            recency_half_life_ms: 30 * 86_400_000,
            importance_weight: 0.0,
            hybrid_depth: 10,
            hybrid_keyword_weight: 0.4,
            hybrid_context_weight: 0.5,
            hybrid_context_window: 2,
        }
    }
}

/// The option names accepted in CREATE, for error messages.
pub const OPTION_NAMES: &str = "dim, metric, m, ef_construction, ef_search, auto_embed, exact_max, \
     dedup, dedup_threshold, secrets, recency_weight, recency_half_life, importance_weight, \
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
                "dedup" => o.dedup = DedupPolicy::parse(&value)?,
                "dedup_threshold" => o.dedup_threshold = fraction(&key, &value)?,
                "secrets" => o.secrets = crate::redact::SecretPolicy::parse(&value)?,
                "recency_weight" => o.recency_weight = fraction(&key, &value)?,
                "recency_half_life" => {
                    o.recency_half_life_ms =
                        parse_duration_ms("memories option recency_half_life", &value)?
                }
                "importance_weight" => o.importance_weight = fraction(&key, &value)?,
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
        if o.recency_weight + o.importance_weight > 1.0 {
            return Err(Error::invalid(format!(
                "memories options recency_weight + importance_weight: expected at most 1, got {}",
                o.recency_weight + o.importance_weight
            )));
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
            ("dedup", self.dedup.name().to_string()),
            ("dedup_threshold", self.dedup_threshold.to_string()),
            ("secrets", self.secrets.name().to_string()),
            ("recency_weight", self.recency_weight.to_string()),
            (
                "recency_half_life",
                format!("{}ms", self.recency_half_life_ms),
            ),
            ("importance_weight", self.importance_weight.to_string()),
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
            "dedup=skip",
            "dedup_threshold=0.95",
            "secrets=reject",
            "recency_weight=0.3",
            "recency_half_life=7d",
            "importance_weight=0.2",
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
        assert_eq!(o.dedup, DedupPolicy::Skip);
        assert_eq!(o.dedup_threshold, 0.95);
        assert_eq!(o.recency_half_life_ms, 7 * 86_400_000);
        assert_eq!((o.recency_weight, o.importance_weight), (0.3, 0.2));
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
        assert!(msg(&["dedup=maybe"]).contains("skip, merge or off"));
        assert!(msg(&["dedup_threshold=1.5"]).contains("0..=1"));
        assert!(msg(&["recency_half_life=soon"]).contains("duration"));
        assert!(msg(&["recency_weight=0.8", "importance_weight=0.5"]).contains("at most 1"));
        assert!(msg(&["hybrid_keyword_weight=1.5"]).contains("0..=1"));
        assert!(msg(&["hybrid_context_weight=nan"]).contains("hybrid_context_weight"));
        assert!(msg(&["hybrid_depth=0"]).contains("hybrid_depth"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("t", "90").ok(), Some(90_000));
        assert_eq!(parse_duration_ms("t", "250ms").ok(), Some(250));
        assert_eq!(parse_duration_ms("t", "1.5h").ok(), Some(5_400_000));
        assert_eq!(parse_duration_ms("t", "2w").ok(), Some(1_209_600_000));
        assert!(parse_duration_ms("t", "-1d").is_err());
        assert!(parse_duration_ms("t", "0").is_err());
        assert!(parse_duration_ms("t", "7 fortnights").is_err());
    }
}
