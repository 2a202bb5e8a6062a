//! Options of `CREATE VIRTUAL TABLE ... USING memories(key=value, ...)`.
//!
//! Each option is defined once, in the `table_options!` list below: its field of
//! [`TableOptions`] (type, default, field docs), its name and aliases, its [`Kind`] (syntax
//! and range) and its line of the README. From that list come the struct, its
//! [`Default`], [`SPECS`], and from [`SPECS`]: [`TableOptions::parse`],
//! [`TableOptions::to_pairs`] (the `<table>_config` keys and values), the list of names in
//! error messages ([`option_names`]) and the README table (`readme_table`, checked against
//! README.md by a unit test).

use crate::embedder::MODEL_DIM;
use crate::error::{Error, Result};
use crate::redact::SecretPolicy;
use crate::vector::Metric;

/// The syntax and range of an option's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// An integer in `min..=max`.
    Int {
        /// Smallest accepted value.
        min: usize,
        /// Largest accepted value.
        max: usize,
    },
    /// A finite real number in `min..=max`.
    Real {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// `on`/`off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
    Flag,
    /// A [`Metric`] name.
    Metric,
    /// A [`DedupPolicy`] name.
    Dedup,
    /// A [`SecretPolicy`] name.
    Secrets,
    /// A [`SecretPolicy`] name, for personal data (the `pii` option).
    Pii,
    /// A duration ([`parse_duration_ms`]), kept in milliseconds.
    Duration,
    /// A [`Retention`]: `all`, a number of versions, or a duration.
    Retention,
}

/// A parsed option value, typed by its [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// From [`Kind::Int`].
    Int(usize),
    /// From [`Kind::Real`].
    Real(f64),
    /// From [`Kind::Flag`].
    Flag(bool),
    /// From [`Kind::Metric`].
    Metric(Metric),
    /// From [`Kind::Dedup`].
    Dedup(DedupPolicy),
    /// From [`Kind::Secrets`] and [`Kind::Pii`].
    Secrets(SecretPolicy),
    /// From [`Kind::Duration`]: milliseconds.
    Ms(i64),
    /// From [`Kind::Retention`].
    Retention(Retention),
}

/// One table option: everything the parser, `to_pairs`, the error messages and the README
/// know about it.
pub(crate) struct OptionSpec {
    /// The key in CREATE and in the `<table>_config` shadow table.
    pub name: &'static str,
    /// Other spellings CREATE accepts (never written to `<table>_config`).
    pub aliases: &'static [&'static str],
    /// Syntax and range of the value.
    pub kind: Kind,
    /// The README's "default" cell when the default value rendered by
    /// `Value::readme` would not say it (e.g. a default that depends on another option).
    /// The README's two cells are used only by the test that checks README.md.
    #[cfg(test)]
    pub readme_default: Option<&'static str>,
    /// The README's "meaning" cell; `{range}` is replaced by the range of an `Int` or `Real`
    /// kind (`1..8192`).
    #[cfg(test)]
    pub doc: &'static str,
    /// Reads the option's field.
    pub get: fn(&TableOptions) -> Value,
    /// Writes the option's field (a value of another kind than the field's is ignored: the
    /// unit tests check that each kind matches its field).
    pub set: fn(&mut TableOptions, Value),
}

macro_rules! value_conversions {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for Value {
            fn from(x: $ty) -> Self {
                Value::$variant(x)
            }
        }
        impl TryFrom<Value> for $ty {
            type Error = ();
            fn try_from(v: Value) -> std::result::Result<Self, ()> {
                match v {
                    Value::$variant(x) => Ok(x),
                    _ => Err(()),
                }
            }
        }
    )*};
}

value_conversions!(
    usize => Int,
    f64 => Real,
    bool => Flag,
    Metric => Metric,
    DedupPolicy => Dedup,
    SecretPolicy => Secrets,
    i64 => Ms,
    Retention => Retention,
);

/// Defines [`TableOptions`], its `Default` and [`SPECS`] from one list: per option its
/// field docs, `field: type = default`, `name | alias...`, kind, optional README default,
/// README meaning.
macro_rules! table_options {
    ($(
        $(#[doc = $fdoc:literal])*
        $field:ident: $ty:ty = $default:expr,
        $name:literal $(| $alias:literal)*, $kind:expr, $readme_default:expr, $doc:literal;
    )*) => {
        /// Parsed table options. Stored in the `<table>_config` shadow table at CREATE and
        /// read back at connect, so a table keeps the options it was created with.
        #[derive(Debug, Clone, PartialEq)]
        pub struct TableOptions {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        impl Default for TableOptions {
            fn default() -> Self {
                TableOptions { $( $field: $default, )* }
            }
        }

        /// Every table option, in the order of `to_pairs`, of error messages and of the
        /// README table.
        pub(crate) const SPECS: &[OptionSpec] = &[$(
            OptionSpec {
                name: $name,
                aliases: &[$($alias),*],
                kind: $kind,
                #[cfg(test)]
                readme_default: $readme_default,
                #[cfg(test)]
                doc: $doc,
                get: |o| Value::from(o.$field),
                set: |o, v| {
                    if let Ok(x) = <$ty>::try_from(v) {
                        o.$field = x;
                    }
                },
            },
        )*];
    };
}

table_options! {
    /// Vector dimension (number of float32 per embedding). Default: the model's, 384.
    dim: usize = MODEL_DIM,
        "dim" | "dimensions", Kind::Int { min: 1, max: 8192 }, None,
        "vector dimension ({range})";
    /// Distance metric. Default cosine.
    metric: Metric = Metric::Cosine,
        "metric" | "distance_metric", Kind::Metric, None,
        "`cosine` (1 - cos), `l2` (Euclidean), `ip` (1 - dot)";
    /// HNSW connectivity `M` (edges per node per layer). Default 16 (Malkov & Yashunin 2016
    /// recommend 5..48; 16 is usearch's and hnswlib's default).
    m: usize = 16,
        "m" | "connectivity", Kind::Int { min: 2, max: 256 }, None,
        "HNSW connectivity M ({range})";
    /// HNSW `ef_construction`: candidate list size while inserting. Default 64 (perf
    /// branch: with ef_search 128, recall@10 0.972 at 100k 384-d vectors vs 0.933 for
    /// 128/64, and 2.3x the insert rate; benches/py/perf_targets.py).
    ef_construction: usize = 64,
        "ef_construction", Kind::Int { min: 1, max: 4096 }, None,
        "HNSW candidate list while inserting";
    /// HNSW `ef_search`: candidate list size while searching (raised to `k` when smaller).
    /// Default 128 (see `ef_construction`).
    ef_search: usize = 128,
        "ef_search", Kind::Int { min: 1, max: 4096 }, None,
        "HNSW candidate list while searching (raised to k)";
    /// Compute `embedding` from `content` with the model when no embedding is supplied.
    /// Default on when `dim` is the model's dimension, else off.
    auto_embed: bool = true,
        "auto_embed", Kind::Flag, Some("`on` when dim = 384"),
        "embed `content` with the model when no `embedding` is supplied";
    /// Searches over at most this many vectors (a whole table, or one namespace) are exact
    /// brute-force scans instead of HNSW. Default 2048.
    exact_max: usize = 2048,
        "exact_max", Kind::Int { min: 0, max: 10_000_000 }, None,
        "searches over at most this many vectors (table or namespace) are exact scans";
    /// A whole-table KNN on a cosine table with an HNSW snapshot, over more than
    /// `exact_max` and at most this many vectors, is an exact scan of int8 codes of the
    /// snapshot's vectors with a proven error bound per vector (the few that can reach the
    /// top k get their exact distance) instead of the graph walk (`ann/quant.rs`).
    /// Default 16384; 0 turns it off.
    scan_max: usize = 16_384,
        "scan_max", Kind::Int { min: 0, max: 10_000_000 }, None,
        "whole-table KNN on a cosine table over more than `exact_max` and at most this many vectors is an exact scan of int8 codes instead of the HNSW walk (0 = off)";

    // ---- memory semantics: capture hygiene and ranking (see dedup.rs, redact.rs, rank.rs) ----
    /// What an INSERT of a duplicate does ([`DedupPolicy`]). Default `merge`.
    dedup: DedupPolicy = DedupPolicy::Merge,
        "dedup", Kind::Dedup, None,
        "what an INSERT of a duplicate does: `merge`, `skip` or `off` (see [Capture hygiene](#capture-hygiene-dedup-ttl-secrets))";
    /// Cosine similarity at or above which a new memory is a near duplicate of an existing
    /// one in the same namespace: the new memory supersedes it. Default 0.92, from
    /// BENCHMARKS.md "Dedup threshold" (`benches/dedup_threshold.py`): the lowest threshold
    /// at which none of 36 hand-written distinct-fact pairs is superseded and at most 1% of
    /// the LoCoMo questions lose an evidence turn (at 0.92: 31 of 72 corrections and 8 of 36
    /// restatements supersede; 20 of 2,760 LoCoMo turns are superseded).
    /// Only for tables with `metric=cosine`; 1.0 keeps exact duplicates only.
    dedup_threshold: f64 = 0.92,
        "dedup_threshold", Kind::Real { min: 0.0, max: 1.0 }, None,
        "cosine similarity at or above which a new memory is a near duplicate (1 = exact duplicates only; near duplicates need `metric=cosine`)";
    /// What a secret found in `content`, `tags` or `metadata` does
    /// ([`crate::redact::SecretPolicy`]). Default `redact`.
    secrets: SecretPolicy = SecretPolicy::Redact,
        "secrets", Kind::Secrets, None,
        "what a secret in `content`, `source`, `tags` or `metadata` does: `redact`, `reject` or `allow`";
    /// What personal data (payment card numbers, US SSNs, e-mail addresses, phone numbers;
    /// [`crate::redact::is_pii`]) found in `content`, `source`, `tags` or `metadata` does.
    /// Default `redact`: a memory store keeps text forever, indexes it (FTS5) and hands it
    /// to models, so personal data is kept out unless the table asks for it (privacy by
    /// default, GDPR art. 25; PCI DSS forbids storing card numbers in clear); `redact`
    /// rather than `reject` so that an agent's INSERT never fails on a pasted address.
    /// Tables that must remember contacts set `pii=allow`.
    pii: SecretPolicy = SecretPolicy::Redact,
        "pii", Kind::Pii, None,
        "what personal data (payment cards, US SSNs, e-mail addresses, phone numbers) in the same columns does: `redact`, `reject` or `allow` (see [Capture hygiene](#capture-hygiene-dedup-ttl-secrets))";
    /// Weight of recency in the ranking of searches, 0..=1. Default 0 (off).
    recency_weight: f64 = 0.0,
        "recency_weight", Kind::Real { min: 0.0, max: 1.0 }, None,
        "weight of recency in the ranking of searches, {range} (see [Ranking](#ranking-recency-and-importance))";
    /// Half-life of the recency decay, milliseconds. Default 30 days.
    recency_half_life_ms: i64 = 30 * 86_400_000,
        "recency_half_life", Kind::Duration, Some("`'30d'`"),
        "half-life of the recency decay (`'90s'`, `'12h'`, `'7d'`, `'2w'`; quote it)";
    /// Weight of the `importance` column in the ranking of searches, 0..=1. Default 0 (off).
    importance_weight: f64 = 0.0,
        "importance_weight", Kind::Real { min: 0.0, max: 1.0 }, None,
        "weight of `importance` in the ranking, {range} (`recency_weight + importance_weight <= 1`)";

    // ---- hybrid search (fusion and context; see `crate::search::hybrid`) ----
    /// Hybrid search takes each retriever's top `max(k, hybrid_depth)` visible rows as
    /// candidates.
    /// Default 10 (on LoCoMo 10 beat 20 and 50 at the default weights, BENCHMARKS.md).
    hybrid_depth: usize = 10,
        "hybrid_depth", Kind::Int { min: 1, max: 4096 }, None,
        "hybrid search's candidates: each retriever's top max(k, hybrid_depth) rows a search can return (expired and superseded rows take no place)";
    /// Weight of the keyword side in hybrid search's own score of a row:
    /// `w * bm25 / best bm25 + (1 - w) * cosine similarity`, in 0..=1. Default 0.4
    /// (chosen by leave-one-conversation-out on LoCoMo, BENCHMARKS.md).
    hybrid_keyword_weight: f64 = 0.4,
        "hybrid_keyword_weight", Kind::Real { min: 0.0, max: 1.0 }, None,
        "`w`: weight of normalised BM25 against cosine similarity ({range})";
    /// Weight of the best neighbouring memory's own score added to a row's score in hybrid
    /// search (0 turns neighbour context off). Default 0.5.
    hybrid_context_weight: f64 = 0.5,
        "hybrid_context_weight", Kind::Real { min: 0.0, max: 10.0 }, None,
        "`g`: weight of the best neighbour's score (0 = no context)";
    /// Neighbours of a memory for hybrid search's context: the memories stored just before
    /// and after it in its namespace (by id), this many on each side (0 = off). Default 2.
    hybrid_context_window: usize = 2,
        "hybrid_context_window", Kind::Int { min: 0, max: 64 }, None,
        "neighbours on each side: memories stored just before/after in the namespace (0 = no context)";

    // ---- history (see `crate::store::history`) ----
    /// Record every change in `<table>_history` (as-of queries, diff, restore). Default on.
    history: bool = true,
        "history", Kind::Flag, None,
        "record every change in the table's history (as-of queries, snapshots, diff, restore; see [History](#history-as-of-snapshots-diff-restore))";
    /// How much history `'purge'` keeps ([`Retention`]). Default everything.
    history_keep: Retention = Retention::All,
        "history_keep", Kind::Retention, None,
        "what `'purge'` keeps of the history: `all`, a number of versions (`10000`) or an age (`'30d'`); snapshots pin the changes after them";
}

/// How much of a table's history `'purge'` keeps (the `history_keep` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Every change.
    All,
    /// The newest this many versions.
    Versions(usize),
    /// The changes at most this old, in milliseconds.
    Age(i64),
}

impl Retention {
    /// Parses `all`, a positive integer (versions) or a duration with a unit (`30d`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option and the value.
    pub fn parse(key: &str, v: &str) -> Result<Self> {
        let t = v.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Retention::All);
        }
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Retention::Versions(n)),
                _ => Err(Error::invalid(format!(
                    "memories option {key}: expected all, a number of versions >= 1 or an \
                     age such as '30d', got '{v}'"
                ))),
            };
        }
        parse_duration_ms(
            &format!("memories option {key} (all, a number of versions or an age)"),
            t,
        )
        .map(Retention::Age)
    }

    /// The value as `<table>_config` keeps it (`all`, `1000`, `2592000000ms`).
    pub fn render(self) -> String {
        match self {
            Retention::All => "all".to_string(),
            Retention::Versions(n) => n.to_string(),
            Retention::Age(ms) => format!("{ms}ms"),
        }
    }
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

impl Kind {
    /// Parses `value` (already unquoted) of the option spelled `key` in the statement.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option, the expected form or range, and the value.
    fn parse(self, key: &str, value: &str) -> Result<Value> {
        Ok(match self {
            Kind::Int { min, max } => Value::Int(int(key, value, min, max)?),
            Kind::Real { min, max } => Value::Real(real(key, value, min, max)?),
            Kind::Flag => Value::Flag(boolean(key, value)?),
            Kind::Metric => Value::Metric(Metric::parse(value)?),
            Kind::Dedup => Value::Dedup(DedupPolicy::parse(value)?),
            Kind::Secrets => Value::Secrets(SecretPolicy::parse(value)?),
            Kind::Pii => Value::Secrets(SecretPolicy::parse_option("pii", value)?),
            Kind::Duration => {
                Value::Ms(parse_duration_ms(&format!("memories option {key}"), value)?)
            }
            Kind::Retention => Value::Retention(Retention::parse(key, value)?),
        })
    }

    /// The range of an `Int` or `Real` kind as the README writes it (`1..8192`).
    #[cfg(test)]
    fn range(self) -> Option<String> {
        match self {
            Kind::Int { min, max } => Some(format!("{min}..{max}")),
            Kind::Real { min, max } => Some(format!("{min}..{max}")),
            _ => None,
        }
    }
}

impl Value {
    /// The value in the form [`Kind::parse`] reads back: what `to_pairs` writes to
    /// `<table>_config` (`384`, `cosine`, `on`, `0.92`, `2592000000ms`).
    fn render(self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Real(x) => x.to_string(),
            Value::Flag(b) => if b { "on" } else { "off" }.to_string(),
            Value::Metric(m) => m.name().to_string(),
            Value::Dedup(d) => d.name().to_string(),
            Value::Secrets(s) => s.name().to_string(),
            Value::Ms(ms) => format!("{ms}ms"),
            Value::Retention(r) => r.render(),
        }
    }

    /// The value as the README's "default" cell shows it: numbers bare, words in backticks.
    #[cfg(test)]
    fn readme(self) -> String {
        match self {
            Value::Int(_) | Value::Real(_) => self.render(),
            _ => format!("`{}`", self.render()),
        }
    }
}

/// The option names accepted in CREATE (without aliases), for error messages:
/// `dim, metric, m, ...`.
pub(crate) fn option_names() -> String {
    SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// Whether `key` of a `<table>_config` row is a table option (written by
/// [`TableOptions::to_pairs`]; aliases are never written), as opposed to the table's own
/// state (`format`, `generation`, the HNSW snapshot's keys).
pub(crate) fn is_option(key: &str) -> bool {
    SPECS.iter().any(|s| s.name == key)
}

/// The README's table of options (Markdown, header included, one line per option, each
/// line ending in `\n`), rendered from [`SPECS`] and [`TableOptions::default`]. A unit test
/// checks that README.md holds it.
#[cfg(test)]
pub(crate) fn readme_table() -> String {
    let defaults = TableOptions::default();
    let mut out = String::from("| option | default | meaning |\n|---|---|---|\n");
    for s in SPECS {
        let default = s
            .readme_default
            .map_or_else(|| (s.get)(&defaults).readme(), str::to_string);
        let doc = match s.kind.range() {
            Some(r) => s.doc.replace("{range}", &r),
            None => s.doc.to_string(),
        };
        out.push_str(&format!("| `{}` | {default} | {doc} |\n", s.name));
    }
    out
}

impl TableOptions {
    /// Parses the module arguments of CREATE VIRTUAL TABLE (each `key=value`, values may
    /// be quoted).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown key, a missing `=`, a value of the wrong type or out
    /// of range, or `auto_embed=on` with a dimension other than the model's.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self> {
        let mut o = TableOptions::default();
        let mut auto_embed_given = false;
        for raw in args {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let (key, value) = raw.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "memories option '{raw}': expected key=value with key one of {}",
                    option_names()
                ))
            })?;
            let key = key.trim().to_ascii_lowercase();
            let value = unquote(value.trim());
            let spec = SPECS
                .iter()
                .find(|s| s.name == key || s.aliases.contains(&key.as_str()))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "memories: unknown option '{key}'; expected one of {}",
                        option_names()
                    ))
                })?;
            (spec.set)(&mut o, spec.kind.parse(&key, &value)?);
            auto_embed_given |= spec.name == "auto_embed";
        }
        if o.recency_weight + o.importance_weight > 1.0 {
            return Err(Error::invalid(format!(
                "memories options recency_weight + importance_weight: expected at most 1, got {}",
                o.recency_weight + o.importance_weight
            )));
        }
        if !auto_embed_given {
            o.auto_embed = o.dim == MODEL_DIM;
        } else if o.auto_embed && o.dim != MODEL_DIM {
            return Err(Error::invalid(format!(
                "memories: auto_embed=on needs dim={MODEL_DIM} (the model's dimension), got dim={}",
                o.dim
            )));
        }
        Ok(o)
    }

    /// The options as `key=value` pairs, in the form [`TableOptions::parse`] reads: every
    /// option of [`SPECS`], in its order, under its name.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        SPECS
            .iter()
            .map(|s| (s.name, (s.get)(self).render()))
            .collect()
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

/// `None` when `readme` holds exactly [`readme_table`] (between the line after the
/// `### CREATE VIRTUAL TABLE` heading's blank line and the next blank line), else the
/// message a test fails with, which carries the table to paste.
#[cfg(test)]
fn readme_mismatch(readme: &str) -> Option<String> {
    let want = readme_table();
    let header = "| option | default | meaning |\n";
    let found = readme.find(header).map(|start| {
        let rest = &readme[start..];
        let end = rest.find("\n\n").map_or(rest.len(), |e| e + 1);
        &rest[..end]
    });
    if found == Some(want.as_str()) {
        return None;
    }
    Some(format!(
        "README.md's table of options (under \"### `CREATE VIRTUAL TABLE name USING \
         memories(option=value, ...)`\") is not the one rendered from options::SPECS; replace it with:\n\n{want}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = TableOptions::parse::<&str>(&[]).map_err(|e| e.to_string());
        assert_eq!(o, Ok(TableOptions::default()));
        let d = TableOptions::default();
        assert!(d.auto_embed);
        assert_eq!((d.dim, d.metric, d.m), (MODEL_DIM, Metric::Cosine, 16));
        assert_eq!(d.recency_half_life_ms, 30 * 86_400_000);
    }

    /// The `<table>_config` keys and spellings are the on-disk format: they must not change.
    #[test]
    fn to_pairs_is_the_on_disk_format() {
        let want = [
            ("dim", "384"),
            ("metric", "cosine"),
            ("m", "16"),
            ("ef_construction", "64"),
            ("ef_search", "128"),
            ("auto_embed", "on"),
            ("exact_max", "2048"),
            ("scan_max", "16384"),
            ("dedup", "merge"),
            ("dedup_threshold", "0.92"),
            ("secrets", "redact"),
            ("pii", "redact"),
            ("recency_weight", "0"),
            ("recency_half_life", "2592000000ms"),
            ("importance_weight", "0"),
            ("hybrid_depth", "10"),
            ("hybrid_keyword_weight", "0.4"),
            ("hybrid_context_weight", "0.5"),
            ("hybrid_context_window", "2"),
            ("history", "on"),
            ("history_keep", "all"),
        ];
        let got = TableOptions::default().to_pairs();
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, want);
        assert_eq!(
            option_names(),
            "dim, metric, m, ef_construction, ef_search, auto_embed, exact_max, scan_max, dedup, \
             dedup_threshold, secrets, pii, recency_weight, recency_half_life, importance_weight, \
             hybrid_depth, hybrid_keyword_weight, hybrid_context_weight, hybrid_context_window, \
             history, history_keep"
        );
    }

    /// Each spec's kind produces values of its field's type: its default renders and parses
    /// back to itself, and `set` writes what `get` reads.
    #[test]
    fn spec_kinds_match_their_fields() {
        let d = TableOptions::default();
        for s in SPECS {
            let v = (s.get)(&d);
            let back = s.kind.parse(s.name, &v.render()).map_err(|e| e.to_string());
            assert_eq!(back, Ok(v), "option {}", s.name);
            let mut o = TableOptions::default();
            (s.set)(&mut o, v);
            assert_eq!(o, d, "option {}", s.name);
            assert!(is_option(s.name), "{}", s.name);
        }
        // A value of another kind is not written.
        let mut o = TableOptions::default();
        (SPECS[0].set)(&mut o, Value::Flag(false));
        assert_eq!(o, d);
        // The README's default of recency_half_life is the default.
        let half_life = SPECS.iter().find(|s| s.name == "recency_half_life");
        let shown = half_life.and_then(|s| s.readme_default).unwrap_or_default();
        assert_eq!(
            Kind::Duration
                .parse(
                    "recency_half_life",
                    shown.trim_matches(|c| c == '`' || c == '\'')
                )
                .ok(),
            Some(Value::Ms(d.recency_half_life_ms))
        );
        let auto = SPECS.iter().find(|s| s.name == "auto_embed");
        let shown = auto.and_then(|s| s.readme_default).unwrap_or_default();
        assert!(shown.contains(&format!("dim = {MODEL_DIM}")), "{shown}");
    }

    #[test]
    fn config_keys_that_are_not_options() {
        for k in [
            "format",
            "generation",
            "hnsw_saved",
            "hnsw_vectors",
            "history_floor",
            "history_since",
            "dimensions",
            "",
        ] {
            assert!(!is_option(k), "{k}");
        }
        assert!(is_option("hybrid_context_window"));
    }

    #[test]
    fn parses_all() {
        let args = [
            "dim=8",
            "metric='l2'",
            "m=32",
            "ef_construction=200",
            "ef_search = 100",
            "auto_embed=off",
            "exact_max=0",
            "scan_max=5000",
            "dedup=skip",
            "dedup_threshold=0.95",
            "secrets=reject",
            "pii=allow",
            "recency_weight=0.3",
            "recency_half_life=7d",
            "importance_weight=0.2",
            "hybrid_depth=20",
            "hybrid_keyword_weight=0.25",
            "hybrid_context_weight=0",
            "hybrid_context_window=3",
            "history=off",
            "history_keep='30d'",
        ];
        // Every option is exercised here.
        for s in SPECS {
            assert!(
                args.iter().any(|a| a.starts_with(&format!("{}=", s.name))
                    || a.starts_with(&format!("{} ", s.name))),
                "parses_all does not set {}",
                s.name
            );
        }
        let o = TableOptions::parse(&args).unwrap_or_default();
        assert_eq!(o.dim, 8);
        assert_eq!(o.metric, Metric::L2);
        assert_eq!((o.m, o.ef_construction, o.ef_search), (32, 200, 100));
        assert!(!o.auto_embed);
        assert_eq!(o.exact_max, 0);
        assert_eq!(o.scan_max, 5000);
        assert_eq!(o.dedup, DedupPolicy::Skip);
        assert_eq!(o.dedup_threshold, 0.95);
        assert_eq!(o.secrets, SecretPolicy::Reject);
        assert_eq!(o.pii, SecretPolicy::Allow);
        assert_eq!(o.recency_half_life_ms, 7 * 86_400_000);
        assert_eq!((o.recency_weight, o.importance_weight), (0.3, 0.2));
        assert_eq!(o.hybrid_depth, 20);
        assert_eq!(o.hybrid_keyword_weight, 0.25);
        assert_eq!(o.hybrid_context_weight, 0.0);
        assert_eq!(o.hybrid_context_window, 3);
        assert!(!o.history);
        assert_eq!(o.history_keep, Retention::Age(30 * 86_400_000));
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
    fn retention() {
        let p = |v: &str| Retention::parse("history_keep", v).map_err(|e| e.to_string());
        assert_eq!(p("all"), Ok(Retention::All));
        assert_eq!(p("1000"), Ok(Retention::Versions(1000)));
        assert_eq!(p("12h"), Ok(Retention::Age(12 * 3_600_000)));
        for bad in ["0", "-3", "forever", ""] {
            let e = p(bad).err().unwrap_or_default();
            assert!(e.contains("history_keep"), "{bad}: {e}");
        }
        for r in [Retention::All, Retention::Versions(7), Retention::Age(5)] {
            assert_eq!(p(&r.render()), Ok(r));
        }
    }

    #[test]
    fn aliases() {
        let o = TableOptions::parse(&["Dimensions=8", "distance_metric=ip", "connectivity=8"])
            .map_err(|e| e.to_string());
        let o = o.map(|o| (o.dim, o.metric, o.m, o.auto_embed));
        assert_eq!(o, Ok((8, Metric::Ip, 8, false)));
        // The spelling used is the one named in the error.
        let e = TableOptions::parse(&["dimensions=0"])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("memories option dimensions: expected an integer in 1..=8192, got 0")
        );
    }

    #[test]
    fn other_dim_turns_auto_embed_off() {
        let o = TableOptions::parse(&["dim=4"]).unwrap_or_default();
        assert!(!o.auto_embed);
        assert!(TableOptions::parse(&["dim=4", "auto_embed=on"]).is_err());
        let o = TableOptions::parse(&["dim=4", "auto_embed=off"]).unwrap_or_default();
        assert!(!o.auto_embed && o.dim == 4);
    }

    #[test]
    fn errors_name_the_option() {
        let msg = |a: &[&str]| {
            TableOptions::parse(a)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg(&["colour=red"]),
            format!(
                "memories: unknown option 'colour'; expected one of {}",
                option_names()
            )
        );
        assert!(msg(&["dim=0"]).contains("dim"));
        assert!(msg(&["dim=abc"]).contains("'abc'"));
        assert!(msg(&["metric=hamming"]).contains("cosine, l2, ip"));
        assert!(msg(&["auto_embed=maybe"]).contains("on or off"));
        assert!(msg(&["justaword"]).contains("key=value"));
        assert!(msg(&["justaword"]).contains(&option_names()));
        assert!(msg(&["dedup=maybe"]).contains("skip, merge or off"));
        assert_eq!(
            msg(&["dedup_threshold=1.5"]),
            "memories option dedup_threshold: expected a number in 0..=1, got '1.5'"
        );
        assert!(msg(&["recency_half_life=soon"]).contains("duration"));
        assert!(msg(&["recency_half_life=soon"]).starts_with("memories option recency_half_life:"));
        assert!(msg(&["recency_weight=0.8", "importance_weight=0.5"]).contains("at most 1"));
        assert!(msg(&["hybrid_keyword_weight=1.5"]).contains("0..=1"));
        assert!(msg(&["hybrid_context_weight=nan"]).contains("hybrid_context_weight"));
        assert!(msg(&["hybrid_depth=0"]).contains("hybrid_depth"));
    }

    #[test]
    fn readme_holds_the_rendered_table() {
        if let Some(m) = readme_mismatch(include_str!("../README.md")) {
            panic!("{m}");
        }
    }

    #[test]
    fn readme_mismatch_names_the_table_to_paste() {
        let table = readme_table();
        let good = format!("### heading\n\n{table}\nUnknown options are errors.\n");
        assert_eq!(readme_mismatch(&good), None);
        let bad = good.replace("| `m` | 16 |", "| `m` | 17 |");
        assert_ne!(bad, good);
        let m = readme_mismatch(&bad).unwrap_or_default();
        assert!(m.contains("replace it with") && m.ends_with(&table), "{m}");
        // A missing row, or no table at all, is a mismatch too.
        let short = good.replace("| `m` | 16 | HNSW connectivity M (2..256) |\n", "");
        assert_ne!(short, good);
        assert!(readme_mismatch(&short).is_some());
        assert!(readme_mismatch("no table here").is_some());
        assert!(table.contains("| `dim` | 384 | vector dimension (1..8192) |\n"));
        assert_eq!(table.lines().count(), SPECS.len() + 2);
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
