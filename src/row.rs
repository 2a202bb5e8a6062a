//! One memory: the columns of a `memories` table, and validation of user-supplied values.

use rusqlite::types::ValueRef;

use crate::error::{Error, Result};
use crate::vector::clip;

/// Column positions in the declared schema of a `memories` table (also the order of the
/// values SQLite passes to xUpdate after the two rowids).
pub(crate) mod col {
    /// `id INTEGER`: the rowid.
    pub(crate) const ID: i32 = 0;
    /// `content TEXT`: the memory text (required, non-empty).
    pub(crate) const CONTENT: i32 = 1;
    /// `namespace TEXT`: partition of memories (default `'default'`).
    pub(crate) const NAMESPACE: i32 = 2;
    /// `tags TEXT`: JSON array of strings (default `'[]'`).
    pub(crate) const TAGS: i32 = 3;
    /// `metadata TEXT`: JSON object (default `'{}'`).
    pub(crate) const METADATA: i32 = 4;
    /// `source TEXT`: where the memory came from (nullable).
    pub(crate) const SOURCE: i32 = 5;
    /// `importance REAL` in 0..=1 (default 0.5).
    pub(crate) const IMPORTANCE: i32 = 6;
    /// `created_at INTEGER`: milliseconds since the Unix epoch.
    pub(crate) const CREATED_AT: i32 = 7;
    /// `updated_at INTEGER`: milliseconds since the Unix epoch.
    pub(crate) const UPDATED_AT: i32 = 8;
    /// `embedding BLOB`: `dim` little-endian float32.
    pub(crate) const EMBEDDING: i32 = 9;
    /// `expires_at INTEGER`: milliseconds since the Unix epoch after which the memory is
    /// expired (never returned by a search; removed by `'purge'`), or NULL (never).
    pub(crate) const EXPIRES_AT: i32 = 10;
    /// `superseded_by INTEGER`: read-only; the id of the newer memory that supersedes this
    /// one (a near duplicate stored after it, see [`crate::table::dedup`]), or NULL. Superseded
    /// memories come back from no search unless `include_superseded = 1`.
    pub(crate) const SUPERSEDED_BY: i32 = 11;
    /// `distance REAL HIDDEN`: KNN distance of this row to the query vector.
    pub(crate) const DISTANCE: i32 = 12;
    /// `score REAL HIDDEN`: relevance, higher is better (see the README).
    pub(crate) const SCORE: i32 = 13;
    /// `k INTEGER HIDDEN`: number of results wanted by a search.
    pub(crate) const K: i32 = 14;
    /// `ttl HIDDEN`: write-only convenience: a time to live (seconds, or a duration such as
    /// `'7d'`) given at INSERT/UPDATE sets `expires_at = now + ttl`. Reads as NULL.
    pub(crate) const TTL: i32 = 15;
    /// `ranking TEXT HIDDEN`: per-query ranking weights as JSON, e.g.
    /// `ranking = '{"recency_weight":0.3,"half_life":"7d","importance_weight":0.1}'`
    /// (see [`crate::search::rank`]).
    pub(crate) const RANKING: i32 = 16;
    /// `explain TEXT HIDDEN`: JSON of the ranking components of a search result.
    pub(crate) const EXPLAIN: i32 = 17;
    /// `include_superseded INTEGER HIDDEN`: `AND include_superseded = 1` makes a search
    /// return superseded memories too (0, the default when absent, hides them).
    pub(crate) const INCLUDE_SUPERSEDED: i32 = 18;
    /// `as_of HIDDEN`: `AND as_of = ?` (a snapshot name, a version, or a time in ms since
    /// the Unix epoch) runs a scan or search against the table as it was then; reads as
    /// the version the row is as of (NULL without `as_of`).
    pub(crate) const AS_OF: i32 = 19;
    /// The hidden column named after the table: hybrid search (`WHERE mem MATCH ?`).
    pub(crate) const TABLE: i32 = 20;
}

/// Namespace used when none is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";
/// Importance used when none is given.
pub(crate) const DEFAULT_IMPORTANCE: f64 = 0.5;
/// Largest accepted `content`, in bytes (SQLite's default SQLITE_MAX_LENGTH is 1e9; memories
/// are meant to be short, and embeddings only see the first 256 tokens).
pub(crate) const MAX_CONTENT_BYTES: usize = 8 * 1024 * 1024;

/// The declared schema of a `memories` table named `table`.
pub(crate) fn declare_sql(table: &str) -> String {
    format!(
        "CREATE TABLE x(id INTEGER, content TEXT, namespace TEXT, tags TEXT, metadata TEXT, \
         source TEXT, importance REAL, created_at INTEGER, updated_at INTEGER, embedding BLOB, \
         expires_at INTEGER, superseded_by INTEGER, distance REAL HIDDEN, score REAL HIDDEN, \
         k INTEGER HIDDEN, ttl HIDDEN, ranking TEXT HIDDEN, explain TEXT HIDDEN, \
         include_superseded INTEGER HIDDEN, as_of HIDDEN, {} HIDDEN)",
        crate::names::quote(table)
    )
}

/// The stored columns of one memory (everything but the embedding).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Rowid.
    pub id: i64,
    /// Memory text.
    pub content: String,
    /// Namespace.
    pub namespace: String,
    /// JSON array text, compact.
    pub tags: String,
    /// JSON object text, compact.
    pub metadata: String,
    /// Optional source.
    pub source: Option<String>,
    /// 0..=1.
    pub importance: f64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Expiry, milliseconds since the Unix epoch; `None`: never.
    pub expires_at: Option<i64>,
}

impl Row {
    /// Whether the memory has expired at `now` (milliseconds since the Unix epoch).
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQLite's name of a value's storage class (`NULL`, `INTEGER`, `REAL`, `TEXT`, `BLOB`).
pub(crate) fn type_name(v: &ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// A value as SQLite describes it in an error message: `NULL`, `INTEGER 5`, `REAL 2.5`,
/// `TEXT '2x'` (clipped to 60 characters) or `BLOB of 3 bytes`.
pub(crate) fn describe(v: &ValueRef<'_>) -> String {
    match *v {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(i) => format!("INTEGER {i}"),
        ValueRef::Real(r) => format!("REAL {r}"),
        ValueRef::Text(t) => format!("TEXT '{}'", clip(&String::from_utf8_lossy(t))),
        ValueRef::Blob(b) => format!("BLOB of {} bytes", b.len()),
    }
}

/// The type affinity of a declared column type, as far as numbers go
/// (<https://www.sqlite.org/datatype3.html>, "Type Affinity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    /// `INTEGER` (and `NUMERIC`): well-formed numeric TEXT becomes a number, and a REAL
    /// with no fractional part that fits in 64 bits becomes an INTEGER.
    Integer,
    /// `REAL`: well-formed numeric TEXT and every INTEGER become a REAL.
    Real,
}

/// SQLite's whitespace around a number (`sqlite3Isspace`: space, `\t`, `\n`, `\v`, `\f`,
/// `\r`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A REAL as an INTEGER when SQLite's integer affinity converts it
/// (`sqlite3VdbeIntegerAffinity`): finite, no fractional part, strictly between
/// -2^63 and 2^63.
fn integral(r: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact in binary64; the range excludes both ends as SQLite does.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (r.fract() == 0.0 && r > -LIMIT && r < LIMIT).then_some(r as i64)
}

/// The number a TEXT value converts to under numeric affinity, or `None` when the text
/// is not a well-formed integer or real literal (SQLite's `sqlite3AtoF` grammar: optional
/// whitespace, optional sign, digits with at most one `.` and at least one digit, an
/// optional exponent `e[+-]digits`, optional whitespace; hexadecimal `0x10`, `''`, `'2x'`
/// and `'inf'` stay TEXT). An integer literal too large for 64 bits becomes a REAL.
fn numeric_text(t: &[u8]) -> Option<ValueRef<'static>> {
    let start = t.iter().position(|&b| !is_space(b))?;
    let end = t.iter().rposition(|&b| !is_space(b))? + 1;
    let s = &t[start..end];
    let mut i = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let mut mantissa = digits(&mut i);
    let mut integer_literal = true;
    if s.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
        integer_literal = false;
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        integer_literal = false;
    }
    if i != s.len() {
        return None;
    }
    // Only ASCII digits, signs, '.' and 'e' remain: valid UTF-8.
    let s = std::str::from_utf8(s).ok()?;
    if integer_literal && let Ok(n) = s.parse::<i64>() {
        return Some(ValueRef::Integer(n));
    }
    s.parse::<f64>().ok().map(ValueRef::Real)
}

/// Applies SQLite's type affinity `aff` to `v`, exactly as an ordinary table column of
/// that type does when the value is stored or compared: TEXT that is a well-formed
/// integer or real literal (leading and trailing spaces allowed) becomes a number (`'2'`
/// is 2, `' 2.0 '` is 2 for [`Affinity::Integer`], `'0.7'` is 0.7); other TEXT (`'2x'`,
/// `''`, `'0x10'`), BLOBs and NULL are returned unchanged.
///
/// This is the one place where the `memories` table converts types: every INTEGER and
/// REAL column, the rowid, `k`, and the LIMIT/OFFSET values go through it (via
/// [`integer`] and [`real`]).
pub(crate) fn apply_affinity<'a>(v: ValueRef<'a>, aff: Affinity) -> ValueRef<'a> {
    let v = match v {
        ValueRef::Text(t) => numeric_text(t).unwrap_or(v),
        other => other,
    };
    match (v, aff) {
        (ValueRef::Real(r), Affinity::Integer) => integral(r).map_or(v, ValueRef::Integer),
        (ValueRef::Integer(i), Affinity::Real) => ValueRef::Real(i as f64),
        _ => v,
    }
}

/// Reads a value with INTEGER affinity ([`apply_affinity`]): NULL is `None`, an INTEGER
/// (also `'2'`, `2.0`, `'2.0'`) is `Some`.
///
/// # Errors
/// [`Error::Invalid`] for anything else, naming what (`what`, e.g. `column id` or
/// `LIMIT`), the `expected` value and the actual one: `column id: expected an INTEGER,
/// got TEXT '2x'`.
pub(crate) fn integer(v: &ValueRef<'_>, what: &str, expected: &str) -> Result<Option<i64>> {
    match apply_affinity(*v, Affinity::Integer) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        _ => Err(Error::invalid(format!(
            "{what}: expected {expected}, got {}",
            describe(v)
        ))),
    }
}

/// Reads a value with REAL affinity ([`apply_affinity`]): NULL is `None`, an INTEGER,
/// REAL or numeric TEXT (`'0.7'`) is `Some`.
///
/// # Errors
/// [`Error::Invalid`] for anything else, naming `what`, the `expected` value and the
/// actual one.
pub(crate) fn real(v: &ValueRef<'_>, what: &str, expected: &str) -> Result<Option<f64>> {
    match apply_affinity(*v, Affinity::Real) {
        ValueRef::Null => Ok(None),
        ValueRef::Real(r) => Ok(Some(r)),
        _ => Err(Error::invalid(format!(
            "{what}: expected {expected}, got {}",
            describe(v)
        ))),
    }
}

fn text<'a>(v: &ValueRef<'a>, column: &str) -> Result<Option<&'a str>> {
    match *v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => std::str::from_utf8(t).map(Some).map_err(|_| {
            Error::invalid(format!(
                "column {column}: expected UTF-8 TEXT, got invalid UTF-8"
            ))
        }),
        ref other => Err(Error::invalid(format!(
            "column {column}: expected TEXT, got {}",
            type_name(other)
        ))),
    }
}

/// Validates `content`: non-NULL, non-empty TEXT of at most [`MAX_CONTENT_BYTES`].
pub(crate) fn content(v: &ValueRef<'_>) -> Result<String> {
    let t = text(v, "content")?.ok_or_else(|| {
        Error::invalid("column content: expected TEXT, got NULL (content is required)")
    })?;
    if t.trim().is_empty() {
        return Err(Error::invalid(
            "column content: expected non-empty TEXT, got an empty string",
        ));
    }
    if t.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "column content: expected at most {MAX_CONTENT_BYTES} bytes, got {}",
            t.len()
        )));
    }
    Ok(t.to_string())
}

/// Validates `namespace`: NULL means [`DEFAULT_NAMESPACE`]; otherwise non-empty TEXT.
pub(crate) fn namespace(v: &ValueRef<'_>) -> Result<String> {
    match text(v, "namespace")? {
        None => Ok(DEFAULT_NAMESPACE.to_string()),
        Some("") => Err(Error::invalid(
            "column namespace: expected non-empty TEXT or NULL, got an empty string",
        )),
        Some(t) => Ok(t.to_string()),
    }
}

/// Validates `tags`: NULL means `[]`; otherwise a JSON array of strings. Returns compact JSON.
pub(crate) fn tags(v: &ValueRef<'_>) -> Result<String> {
    let Some(t) = text(v, "tags")? else {
        return Ok("[]".to_string());
    };
    let parsed: serde_json::Value = serde_json::from_str(t).map_err(|e| {
        Error::invalid(format!(
            "column tags: expected a JSON array of strings, got invalid JSON '{}' ({e})",
            clip(t)
        ))
    })?;
    let arr = parsed.as_array().ok_or_else(|| {
        Error::invalid(format!(
            "column tags: expected a JSON array of strings, got '{}'",
            clip(t)
        ))
    })?;
    if let Some(bad) = arr.iter().find(|x| !x.is_string()) {
        return Err(Error::invalid(format!(
            "column tags: expected a JSON array of strings, got element {bad}"
        )));
    }
    Ok(parsed.to_string())
}

/// Validates `metadata`: NULL means `{}`; otherwise a JSON object. Returns compact JSON.
pub(crate) fn metadata(v: &ValueRef<'_>) -> Result<String> {
    let Some(t) = text(v, "metadata")? else {
        return Ok("{}".to_string());
    };
    let parsed: serde_json::Value = serde_json::from_str(t).map_err(|e| {
        Error::invalid(format!(
            "column metadata: expected a JSON object, got invalid JSON '{}' ({e})",
            clip(t)
        ))
    })?;
    if !parsed.is_object() {
        return Err(Error::invalid(format!(
            "column metadata: expected a JSON object, got '{}'",
            clip(t)
        )));
    }
    Ok(parsed.to_string())
}

/// Validates `source`: NULL or TEXT.
pub(crate) fn source(v: &ValueRef<'_>) -> Result<Option<String>> {
    Ok(text(v, "source")?.map(str::to_string))
}

/// Validates `importance` (REAL affinity, [`real`]): NULL means [`DEFAULT_IMPORTANCE`];
/// otherwise a number in 0..=1 (`'0.7'` is 0.7).
pub(crate) fn importance(v: &ValueRef<'_>) -> Result<f64> {
    let Some(x) = real(v, "column importance", "a number in 0..1")? else {
        return Ok(DEFAULT_IMPORTANCE);
    };
    if !(0.0..=1.0).contains(&x) {
        return Err(Error::invalid(format!(
            "column importance: expected a number in 0..1, got {x}"
        )));
    }
    Ok(x)
}

/// Validates a timestamp column (INTEGER affinity, [`integer`]): NULL means `None` (the
/// table sets it); otherwise an INTEGER of milliseconds since the Unix epoch
/// (`'1700000000000'` is accepted as that integer).
pub(crate) fn timestamp(v: &ValueRef<'_>, column: &str) -> Result<Option<i64>> {
    integer(
        v,
        &format!("column {column}"),
        "an INTEGER (milliseconds since the Unix epoch)",
    )
}

/// Reads the `ttl` value given at INSERT/UPDATE: NULL means none; an INTEGER or REAL is
/// seconds; TEXT is a duration (`'90s'`, `'12h'`, `'7d'`, see
/// [`crate::options::parse_duration_ms`]). Returns milliseconds.
pub(crate) fn ttl(v: &ValueRef<'_>) -> Result<Option<i64>> {
    let bad = |got: String| {
        Error::invalid(format!(
            "column ttl: expected a positive number of seconds or a duration such as '7d', got {got}"
        ))
    };
    match *v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) if i > 0 && i < 1_000_000_000_000 => Ok(Some(i * 1000)),
        ValueRef::Real(r) if r > 0.0 && r < 1e12 => Ok(Some((r * 1000.0).round() as i64)),
        ValueRef::Integer(i) => Err(bad(i.to_string())),
        ValueRef::Real(r) => Err(bad(r.to_string())),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            crate::options::parse_duration_ms("column ttl", &s).map(Some)
        }
        ValueRef::Blob(_) => Err(bad("BLOB".into())),
    }
}

/// Validates the `id` / rowid (INTEGER affinity, [`integer`]): NULL means "assign one";
/// otherwise an INTEGER (`'2'` and `2.0` are 2).
pub(crate) fn id(v: &ValueRef<'_>) -> Result<Option<i64>> {
    integer(v, "column id", "an INTEGER")
}

/// Reads the `embedding` value: NULL means "none supplied"; otherwise a BLOB of `dim`
/// float32 (checked by [`crate::vector::decode`]).
pub(crate) fn embedding(v: &ValueRef<'_>, dim: usize) -> Result<Option<Vec<f32>>> {
    match *v {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => crate::vector::decode(b, dim, "column embedding").map(Some),
        ref other => Err(Error::invalid(format!(
            "column embedding: expected a BLOB of {dim} float32 ({} bytes) or NULL, got {}",
            dim * 4,
            type_name(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ValueRef<'_> {
        ValueRef::Text(s.as_bytes())
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn tags_validation() {
        assert_eq!(tags(&ValueRef::Null).ok().as_deref(), Some("[]"));
        assert_eq!(
            tags(&t("[ \"a\", \"b\" ]")).ok().as_deref(),
            Some("[\"a\",\"b\"]")
        );
        assert!(err(tags(&t("{\"a\":1}"))).contains("JSON array"));
        assert!(err(tags(&t("[1]"))).contains("element 1"));
        assert!(err(tags(&t("[oops"))).contains("invalid JSON"));
        assert!(err(tags(&ValueRef::Integer(3))).contains("got INTEGER"));
    }

    #[test]
    fn metadata_validation() {
        assert_eq!(metadata(&ValueRef::Null).ok().as_deref(), Some("{}"));
        assert_eq!(
            metadata(&t("{ \"a\" : [1, 2] }")).ok().as_deref(),
            Some("{\"a\":[1,2]}")
        );
        assert!(err(metadata(&t("[1]"))).contains("JSON object"));
        assert!(err(metadata(&t("{"))).contains("invalid JSON"));
    }

    #[test]
    fn content_validation() {
        assert!(err(content(&ValueRef::Null)).contains("content is required"));
        assert!(err(content(&t("  "))).contains("empty"));
        assert!(err(content(&ValueRef::Blob(&[0xff, 0xfe]))).contains("got BLOB"));
        assert!(err(content(&ValueRef::Text(&[0xff, 0xfe]))).contains("UTF-8"));
        assert_eq!(content(&t("hi")).ok().as_deref(), Some("hi"));
    }

    #[test]
    fn importance_range() {
        assert_eq!(importance(&ValueRef::Null).ok(), Some(0.5));
        assert_eq!(importance(&ValueRef::Integer(1)).ok(), Some(1.0));
        assert!(err(importance(&ValueRef::Real(2.0))).contains("got 2"));
        assert!(err(importance(&t("high"))).contains("got TEXT"));
    }

    #[test]
    fn namespace_default() {
        assert_eq!(namespace(&ValueRef::Null).ok().as_deref(), Some("default"));
        assert!(namespace(&t("")).is_err());
    }

    #[test]
    fn embedding_types() {
        assert!(err(embedding(&t("[1,2]"), 2)).contains("got TEXT"));
        assert_eq!(embedding(&ValueRef::Null, 2).ok(), Some(None));
    }

    #[test]
    fn ttl_values() {
        assert_eq!(ttl(&ValueRef::Null).ok(), Some(None));
        assert_eq!(ttl(&ValueRef::Integer(60)).ok(), Some(Some(60_000)));
        assert_eq!(ttl(&t("7d")).ok(), Some(Some(7 * 86_400_000)));
        assert!(err(ttl(&ValueRef::Integer(0))).contains("column ttl"));
        assert!(err(ttl(&t("later"))).contains("column ttl"));
        assert!(err(ttl(&ValueRef::Blob(&[1]))).contains("BLOB"));
    }

    fn int_aff(s: &str) -> ValueRef<'_> {
        apply_affinity(t(s), Affinity::Integer)
    }

    #[test]
    fn integer_affinity_converts_well_formed_numbers() {
        for (text, want) in [
            ("2", 2),
            (" 2 ", 2),
            ("\t+2\n", 2),
            ("-0", 0),
            ("007", 7),
            ("2.0", 2),
            ("2.", 2),
            ("1e3", 1000),
            ("3.0e+5", 300_000),
            ("1700000000000", 1_700_000_000_000),
            ("-9223372036854775808", i64::MIN),
            ("9223372036854775807", i64::MAX),
        ] {
            assert_eq!(int_aff(text), ValueRef::Integer(want), "{text:?}");
        }
        assert_eq!(int_aff("2.5"), ValueRef::Real(2.5));
        assert_eq!(int_aff(".5"), ValueRef::Real(0.5));
        // Too large for 64 bits: a REAL, as in SQLite.
        assert_eq!(
            int_aff("9223372036854775808"),
            ValueRef::Real(9_223_372_036_854_775_808.0)
        );
        assert_eq!(int_aff("1e19"), ValueRef::Real(1e19));
        assert_eq!(
            apply_affinity(ValueRef::Real(4.0), Affinity::Integer),
            ValueRef::Integer(4)
        );
        assert_eq!(
            apply_affinity(ValueRef::Real(-0.0), Affinity::Integer),
            ValueRef::Integer(0)
        );
    }

    #[test]
    fn malformed_numbers_stay_text() {
        for text in [
            "", " ", "2x", "x2", "0x10", "1e", "1e+", ".", "+", "-", "- 2", "1 2", "1..2", "inf",
            "NaN", "1_000", "\u{a0}2", "2\0", "١",
        ] {
            assert_eq!(int_aff(text), t(text), "{text:?}");
            assert_eq!(apply_affinity(t(text), Affinity::Real), t(text), "{text:?}");
        }
        assert_eq!(
            apply_affinity(ValueRef::Blob(b"2"), Affinity::Integer),
            ValueRef::Blob(b"2")
        );
        assert_eq!(
            apply_affinity(ValueRef::Null, Affinity::Real),
            ValueRef::Null
        );
    }

    #[test]
    fn real_affinity() {
        fn real_aff(s: &str) -> ValueRef<'_> {
            apply_affinity(t(s), Affinity::Real)
        }
        assert_eq!(real_aff("0.7"), ValueRef::Real(0.7));
        assert_eq!(real_aff(" 1 "), ValueRef::Real(1.0));
        assert_eq!(real_aff("-2.5e-1"), ValueRef::Real(-0.25));
        assert_eq!(
            apply_affinity(ValueRef::Integer(3), Affinity::Real),
            ValueRef::Real(3.0)
        );
    }

    #[test]
    fn integer_and_real_errors_name_column_expected_and_actual() {
        assert_eq!(id(&t("2")).ok(), Some(Some(2)));
        assert_eq!(id(&ValueRef::Null).ok(), Some(None));
        assert_eq!(
            err(id(&t("2x"))),
            "column id: expected an INTEGER, got TEXT '2x'"
        );
        assert_eq!(
            err(id(&t(""))),
            "column id: expected an INTEGER, got TEXT ''"
        );
        assert_eq!(
            err(id(&t("2.5"))),
            "column id: expected an INTEGER, got TEXT '2.5'"
        );
        assert_eq!(
            err(id(&ValueRef::Real(2.5))),
            "column id: expected an INTEGER, got REAL 2.5"
        );
        assert!(err(id(&ValueRef::Blob(&[1, 2]))).contains("got BLOB of 2 bytes"));
        assert_eq!(
            timestamp(&t("1700000000000"), "created_at").ok(),
            Some(Some(1_700_000_000_000))
        );
        assert_eq!(
            err(timestamp(&t("0x10"), "expires_at")),
            "column expires_at: expected an INTEGER (milliseconds since the Unix epoch), got \
             TEXT '0x10'"
        );
        assert_eq!(importance(&t("0.7")).ok(), Some(0.7));
        assert_eq!(importance(&t(" 1 ")).ok(), Some(1.0));
        assert_eq!(
            err(importance(&t("high"))),
            "column importance: expected a number in 0..1, got TEXT 'high'"
        );
        assert!(err(importance(&t("1.5"))).contains("got 1.5"));
        let long = "9".repeat(100) + "x";
        assert!(err(id(&t(&long))).ends_with("...'"));
    }

    #[test]
    fn declared_schema_quotes_table() {
        assert!(declare_sql("we\"ird").contains("\"we\"\"ird\" HIDDEN"));
    }
}
