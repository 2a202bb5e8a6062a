//! Recency and importance in the ranking of search results.
//!
//! A search (KNN, keyword or hybrid) gives each candidate a relevance score `s` (higher is
//! better). With ranking weights `w_r` (recency) and `w_i` (importance), `w_r + w_i <= 1`,
//! the final score is
//!
//! ```text
//! relevance = (s - s_min) / (s_max - s_min)         min-max over the candidates (1 if all equal)
//! recency   = 0.5 ^ (age / half_life)                age = now - updated_at, >= 0
//! score     = (1 - w_r - w_i) * relevance + w_r * recency + w_i * importance
//! ```
//!
//! Min-max normalisation puts the three components on the same 0..1 scale whatever the
//! search's own score is (RRF sums, negated BM25, 1 - distance), as in the "relative score
//! fusion" of hybrid search engines; the recency decay is exponential with a half-life, as
//! in Memoria (exp(-age_h / 168)) and mcp-memory-service. With both weights 0 (the
//! default) the ranking is the search's own and nothing here runs.
//!
//! When ranking is on, the search first collects a deeper candidate pool
//! ([`Ranking::pool`]) so that a less relevant but newer or more important memory can
//! enter the top `k`.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::options::{TableOptions, parse_duration_ms};
use crate::search::Found;

/// Ranking weights of one search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranking {
    /// Weight of recency, 0..=1.
    pub recency_weight: f64,
    /// Half-life of the recency decay, milliseconds (> 0).
    pub half_life_ms: i64,
    /// Weight of `importance`, 0..=1.
    pub importance_weight: f64,
}

/// The components behind one ranked result (the `explain` column).
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    /// The search's own score.
    pub search_score: f64,
    /// Min-max normalised search score, 0..=1.
    pub relevance: f64,
    /// `0.5 ^ (age / half_life)`, 0..=1.
    pub recency: f64,
    /// Age at search time, milliseconds.
    pub age_ms: i64,
    /// The memory's importance, 0..=1.
    pub importance: f64,
    /// The final score.
    pub score: f64,
}

impl Ranking {
    /// The table's default weights (options `recency_weight`, `recency_half_life`,
    /// `importance_weight`).
    pub fn from_options(o: &TableOptions) -> Self {
        Ranking {
            recency_weight: o.recency_weight,
            half_life_ms: o.recency_half_life_ms,
            importance_weight: o.importance_weight,
        }
    }

    /// These weights overridden by a per-query JSON object, e.g.
    /// `{"recency_weight": 0.3, "half_life": "7d", "importance_weight": 0.1}`
    /// (`half_life` also accepts seconds as a number; `{}` or NULL keeps the table's).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the `ranking` column, the key, the expected and the
    /// actual value.
    pub fn with_json(mut self, json: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(json).map_err(|e| {
            Error::invalid(format!(
                "column ranking: expected a JSON object such as \
                 {{\"recency_weight\":0.3,\"half_life\":\"7d\",\"importance_weight\":0.1}}, got \
                 invalid JSON ({e})"
            ))
        })?;
        let Value::Object(m) = v else {
            return Err(Error::invalid(format!(
                "column ranking: expected a JSON object, got {v}"
            )));
        };
        let weight = |k: &str, v: &Value| -> Result<f64> {
            v.as_f64()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "column ranking: {k}: expected a number in 0..=1, got {v}"
                    ))
                })
        };
        for (k, v) in &m {
            match k.as_str() {
                "recency_weight" | "recency" => self.recency_weight = weight(k, v)?,
                "importance_weight" | "importance" => self.importance_weight = weight(k, v)?,
                "half_life" | "recency_half_life" => {
                    self.half_life_ms = match v {
                        Value::String(s) => parse_duration_ms("column ranking: half_life", s)?,
                        Value::Number(n) => parse_duration_ms(
                            "column ranking: half_life",
                            &n.as_f64().unwrap_or(f64::NAN).to_string(),
                        )?,
                        other => {
                            return Err(Error::invalid(format!(
                                "column ranking: half_life: expected a duration such as \"7d\" \
                                 or seconds, got {other}"
                            )));
                        }
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "column ranking: unknown key '{other}'; expected recency_weight \
                         (or recency), half_life (or recency_half_life), importance_weight (or \
                         importance)"
                    )));
                }
            }
        }
        if self.recency_weight + self.importance_weight > 1.0 {
            return Err(Error::invalid(format!(
                "column ranking: recency_weight + importance_weight: expected at most 1, got {}",
                self.recency_weight + self.importance_weight
            )));
        }
        Ok(self)
    }

    /// Whether recency or importance changes the order at all.
    pub fn active(&self) -> bool {
        self.recency_weight > 0.0 || self.importance_weight > 0.0
    }

    /// Candidates to collect for a top `k` when ranking is on: `max(4k, 50)`, capped by
    /// `cap`; `k` when off.
    pub fn pool(&self, k: usize, cap: usize) -> usize {
        if self.active() {
            k.saturating_mul(4).max(50).min(cap).max(k)
        } else {
            k
        }
    }

    /// Re-ranks `found` (each with its search score) by the final score, best first, ties
    /// by id; `row(id)` gives `(updated_at, importance)` (ms since the Unix epoch, 0..=1); rows it cannot find are
    /// dropped. Sets each result's `score` to the final score and returns the components
    /// in the same order.
    ///
    pub fn apply(
        &self,
        found: Vec<Found>,
        now: i64,
        row: impl Fn(i64) -> Option<(i64, f64)>,
    ) -> (Vec<Found>, Vec<Components>) {
        let scores: Vec<f64> = found.iter().map(|f| f.score.unwrap_or(0.0)).collect();
        let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w_rel = 1.0 - self.recency_weight - self.importance_weight;
        let mut ranked: Vec<(Found, Components)> = Vec::with_capacity(found.len());
        for (mut f, s) in found.into_iter().zip(scores) {
            let Some((updated_at, importance)) = row(f.id) else {
                continue;
            };
            let relevance = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
            let age_ms = (now - updated_at).max(0);
            let recency = 0.5f64.powf(age_ms as f64 / self.half_life_ms.max(1) as f64);
            let score = w_rel * relevance
                + self.recency_weight * recency
                + self.importance_weight * importance;
            f.score = Some(score);
            ranked.push((
                f,
                Components {
                    search_score: s,
                    relevance,
                    recency,
                    age_ms,
                    importance,
                    score,
                },
            ));
        }
        ranked.sort_by(|(a, _), (b, _)| {
            b.score
                .unwrap_or(0.0)
                .total_cmp(&a.score.unwrap_or(0.0))
                .then(a.id.cmp(&b.id))
        });
        ranked.into_iter().unzip()
    }
}

/// The `explain` column of one search result: the ranking components when recency or
/// importance ranked it ([`Components::to_json`]), else the search's own score and
/// distance, as JSON.
pub fn explain(rank: &Ranking, found: &Found, components: Option<&Components>) -> String {
    if let Some(c) = components {
        return c.to_json(rank, found.distance);
    }
    let mut m = serde_json::Map::new();
    if let Some(s) = found.score {
        m.insert("search_score".into(), s.into());
    }
    if let Some(d) = found.distance {
        m.insert("distance".into(), d.into());
    }
    if let Some(s) = found.score {
        m.insert("score".into(), s.into());
    }
    Value::Object(m).to_string()
}

impl Components {
    /// The `explain` column: every component and the weights, as JSON.
    pub fn to_json(&self, r: &Ranking, distance: Option<f64>) -> String {
        let round = |x: f64| (x * 1e6).round() / 1e6;
        let mut m = serde_json::Map::new();
        m.insert("search_score".into(), round(self.search_score).into());
        if let Some(d) = distance {
            m.insert("distance".into(), round(d).into());
        }
        m.insert("relevance".into(), round(self.relevance).into());
        m.insert("recency".into(), round(self.recency).into());
        m.insert(
            "age_days".into(),
            round(self.age_ms as f64 / 86_400_000.0).into(),
        );
        m.insert("importance".into(), round(self.importance).into());
        m.insert(
            "weights".into(),
            serde_json::json!({
                "relevance": round(1.0 - r.recency_weight - r.importance_weight),
                "recency": r.recency_weight,
                "importance": r.importance_weight,
                "half_life_days": round(r.half_life_ms as f64 / 86_400_000.0),
            }),
        );
        m.insert("score".into(), round(self.score).into());
        Value::Object(m).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn found(id: i64, score: f64) -> Found {
        Found {
            id,
            distance: None,
            score: Some(score),
        }
    }

    /// `(id, updated_at, importance)` of a stored row.
    fn row(id: i64, updated_at: i64, importance: f64) -> (i64, i64, f64) {
        (id, updated_at, importance)
    }

    fn ranking(recency_weight: f64, importance_weight: f64) -> Ranking {
        Ranking {
            recency_weight,
            half_life_ms: 7 * DAY,
            importance_weight,
        }
    }

    #[test]
    fn recency_lifts_a_newer_memory() {
        let now = 100 * DAY;
        // id 1: most relevant, 70 days old; id 2: a little less relevant, today.
        let rows = [row(1, 30 * DAY, 0.5), row(2, now, 0.5), row(3, now, 0.5)];
        let get = |id: i64| rows.iter().find(|r| r.0 == id).map(|r| (r.1, r.2));
        let off = ranking(0.0, 0.0);
        assert!(!off.active());
        let on = ranking(0.5, 0.0);
        let (out, comps) = on.apply(vec![found(1, 1.0), found(2, 0.9), found(3, 0.0)], now, get);
        assert_eq!(out.iter().map(|f| f.id).collect::<Vec<_>>(), vec![2, 1, 3]);
        // id 2: relevance 0.9, recency 1 -> 0.95; id 1: relevance 1, recency 2^-10.
        assert!((comps[0].score - 0.95).abs() < 1e-9);
        assert!((comps[1].recency - 0.5f64.powi(10)).abs() < 1e-12);
        assert_eq!(comps[1].age_ms, 70 * DAY);
    }

    #[test]
    fn importance_breaks_near_ties() {
        let now = DAY;
        let rows = [row(1, now, 0.1), row(2, now, 1.0)];
        let get = |id: i64| rows.iter().find(|r| r.0 == id).map(|r| (r.1, r.2));
        let (out, _) = ranking(0.0, 0.3).apply(
            vec![found(1, 0.50), found(2, 0.45), found(3, 0.0)],
            now,
            get,
        );
        // id 3 has no row: dropped.
        assert_eq!(out.iter().map(|f| f.id).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn json_overrides_and_errors() {
        let base = ranking(0.0, 0.0);
        let r = base
            .with_json(r#"{"recency_weight":0.25,"half_life":"2d","importance_weight":0.5}"#)
            .unwrap_or(base);
        assert_eq!(r.recency_weight, 0.25);
        assert_eq!(r.half_life_ms, 2 * DAY);
        assert_eq!(r.importance_weight, 0.5);
        assert_eq!(
            base.with_json(r#"{"half_life":3600}"#)
                .map(|r| r.half_life_ms)
                .ok(),
            Some(3_600_000)
        );
        let err = |j: &str| {
            base.with_json(j)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("[1]").contains("JSON object"));
        assert!(err(r#"{"recency_weight":2}"#).contains("0..=1"));
        assert!(err(r#"{"colour":1}"#).contains("unknown key 'colour'"));
        assert!(err(r#"{"recency":0.7,"importance":0.7}"#).contains("at most 1"));
        assert!(err("{").contains("invalid JSON"));
    }

    #[test]
    fn pool_is_deeper_only_when_on() {
        assert_eq!(ranking(0.0, 0.0).pool(10, 4096), 10);
        assert_eq!(ranking(0.2, 0.0).pool(10, 4096), 50);
        assert_eq!(ranking(0.2, 0.0).pool(100, 4096), 400);
        assert_eq!(ranking(0.2, 0.0).pool(100, 120), 120);
    }
}
