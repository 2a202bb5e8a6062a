//! Context assembly: the memories that best answer a question, packed into a token
//! budget and laid out for reading (`subcog_context`, `subcog_context_items`).
//!
//! Input: the table's hybrid search hits for the question, best first (the SQL adapter runs
//! `<table> MATCH ? AND k = pool_size(budget)`, at least [`POOL_MIN`], so expired and
//! superseded memories are already gone). Then:
//!
//! 1. **Candidates**: the hits (reason `search`), the memories linked to a hit one hop
//!    away in `<table>_links` (either direction, reason `link`), and with the
//!    `neighbours` option the memories stored next to a hit in its namespace (reason
//!    `neighbour`). Their rows are read in one statement; expired and superseded ones are
//!    dropped (so a superseded memory never shows, and never without its successor), and
//!    so are those outside the `namespace` option.
//! 2. **Selection**, best first (greedy): a hit's priority is its search score; a linked
//!    memory joins at [`LINK_FACTOR`] times the priority of the memory that brought it in,
//!    a neighbour at [`NEIGHBOUR_FACTOR`] times; ties go to the lower id. With `diversity`
//!    `d` in 0..1, a candidate's priority is multiplied by `(1 - d)^n` where `n` counts
//!    the memories already chosen from its group (namespace and day). A candidate joins
//!    when its tokens (and its group's header when the group is new) fit in what is left
//!    of the budget; otherwise it is skipped and smaller ones may still join.
//! 3. **Layout**, reading order: groups by namespace (the namespace of the best memory
//!    first), inside a namespace the memories in the order they were stored
//!    (`created_at`, then id), with a header naming the namespace and the day (UTC) each
//!    time the day changes. Each memory's `content` is given verbatim. Two chosen
//!    memories joined by a `contradicts` link are marked (`[#12 contradicts #15]`).
//!
//! Tokens are counted with the model's own tokenizer, without special tokens, over the
//! exact text returned (headers, dates, marks and separators included); the assembled
//! text is counted once more as a whole and, should it exceed the budget, the
//! lowest-priority memory is dropped until it fits. A budget smaller than every
//! candidate gives the empty text: a memory is never truncated.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::row::{self, Row};
use crate::store::history::Undo;
use crate::store::{CONTRADICTS, Link, SUPERSEDES, Store};

/// Priority of a linked memory relative to the chosen memory it is linked to.
pub(crate) const LINK_FACTOR: f64 = 0.9;
/// Priority of a neighbour (the `neighbours` option) relative to the memory next to it.
pub(crate) const NEIGHBOUR_FACTOR: f64 = 0.7;
/// Fewest hybrid-search hits a context starts from (see [`pool_size`]). Measured on
/// LoCoMo dev (BENCHMARKS.md, issue 12): k = 200 ranks slightly more evidence into the
/// first 10-20 hits than k = 50 (+0.004 / +0.010 / +0.003 / +0.001 at 256 / 512 / 1,024 /
/// 2,048 tokens). It was 50 while the deeper search put `subcog_context`'s p50 at 55 ms on
/// 10,000 memories (target 30 ms); since hybrid searches stopped running twice over
/// hidden rows it costs 16-18 ms there (pool 50: 11 ms).
pub(crate) const POOL_MIN: usize = 200;
/// Largest budget accepted, in tokens.
pub(crate) const MAX_BUDGET: i64 = 1_000_000;

/// How many hybrid-search hits a context of `budget` tokens starts from: [`POOL_MIN`],
/// and more for large budgets (one per 16 tokens), at most [`crate::search::MAX_K`].
pub(crate) fn pool_size(budget: usize) -> usize {
    (budget / 16).clamp(POOL_MIN, crate::search::MAX_K as usize)
}

/// Output format of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Plain text: a `# namespace, YYYY-MM-DD` line per group, one memory per line.
    Text,
    /// Markdown: a `## namespace, YYYY-MM-DD` heading per group, one `- ` item per memory.
    Markdown,
    /// JSON: `{"context": [{"id", "namespace", "date", "content", "contradicts"?}, ...]}`.
    Json,
}

/// The options of `subcog_context` (its fourth argument, a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    /// Only memories of this namespace (the search and every candidate).
    pub(crate) namespace: Option<String>,
    /// Output format (default [`Format::Text`]).
    pub(crate) format: Format,
    /// Memories stored next to a hit (this many on each side, 0..=8) are candidates too
    /// (default 0).
    pub(crate) neighbours: usize,
    /// Spread over groups (namespace and day), 0..1 (default 0: pure relevance).
    pub(crate) diversity: f64,
    /// Hits whose hybrid score is below this are left out (default: none).
    pub(crate) min_score: Option<f64>,
    /// Assemble from the table as of this snapshot name (TEXT), version or time in ms
    /// (INTEGER), as `AND as_of = ?` reads it (default: the table now).
    pub(crate) as_of: Option<AsOfArg>,
}

/// The `as_of` option's value, handed to the table's `as_of = ?` as it was given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AsOfArg {
    /// A snapshot name (or an integer written as text, as `as_of = '42'`).
    Text(String),
    /// A version, or a time in ms since the Unix epoch (>= 10^12).
    Int(i64),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            format: Format::Text,
            neighbours: 0,
            diversity: 0.0,
            min_score: None,
            as_of: None,
        }
    }
}

/// The option keys, for error messages.
const KEYS: &str = "namespace, format, neighbours, diversity, min_score, as_of";

impl Options {
    /// Parses the options JSON of `func` (`None` or SQL NULL: the defaults).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the function, the key, what was expected and what was
    /// given: text that is not a JSON object, an unknown key, a value of the wrong type or
    /// out of range.
    pub(crate) fn parse(func: &str, json: Option<&str>) -> Result<Options> {
        let mut o = Options::default();
        let Some(text) = json else {
            return Ok(o);
        };
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "{func}(options): expected a JSON object, got '{}' ({e})",
                clip(text)
            ))
        })?;
        let Value::Object(map) = value else {
            return Err(Error::invalid(format!(
                "{func}(options): expected a JSON object, got '{}'",
                clip(text)
            )));
        };
        for (key, v) in &map {
            let bad = |expected: &str| {
                Error::invalid(format!(
                    "{func}(options): {key}: expected {expected}, got {v}"
                ))
            };
            match key.as_str() {
                "namespace" => match v {
                    Value::String(s) => o.namespace = Some(s.clone()),
                    Value::Null => o.namespace = None,
                    _ => return Err(bad("a string")),
                },
                "format" => {
                    o.format = match v.as_str() {
                        Some("text") => Format::Text,
                        Some("markdown") => Format::Markdown,
                        Some("json") => Format::Json,
                        _ => return Err(bad("\"text\", \"markdown\" or \"json\"")),
                    }
                }
                "neighbours" => {
                    o.neighbours = match v {
                        Value::Bool(b) => usize::from(*b),
                        Value::Number(n) => match n.as_u64() {
                            Some(n) if n <= 8 => n as usize,
                            _ => return Err(bad("an integer in 0..=8 or a boolean")),
                        },
                        _ => return Err(bad("an integer in 0..=8 or a boolean")),
                    }
                }
                "diversity" => match v.as_f64() {
                    Some(d) if (0.0..1.0).contains(&d) => o.diversity = d,
                    _ => return Err(bad("a number in 0..1 (1 excluded)")),
                },
                "min_score" => match v {
                    Value::Null => o.min_score = None,
                    _ => match v.as_f64() {
                        Some(s) if s.is_finite() => o.min_score = Some(s),
                        _ => return Err(bad("a number")),
                    },
                },
                "as_of" => {
                    let expected = "a snapshot name (string), a version or a time in ms since \
                                    the Unix epoch (integer)";
                    o.as_of = match v {
                        Value::Null => None,
                        Value::String(s) if !s.is_empty() => Some(AsOfArg::Text(s.clone())),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => Some(AsOfArg::Int(i)),
                            None => return Err(bad(expected)),
                        },
                        _ => return Err(bad(expected)),
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{func}(options): unknown option '{key}'; expected one of {KEYS}"
                    )));
                }
            }
        }
        Ok(o)
    }
}

/// At most 60 characters of `s`, for error messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Why a memory is in a context.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reason {
    /// A hybrid search hit, with its rank (1 = best).
    Search(usize),
    /// Linked to memory `from` (already chosen) by a link of this kind.
    Link {
        /// The chosen memory the link starts from or ends at.
        from: i64,
        /// The link's kind.
        kind: String,
    },
    /// Stored next to memory `of` (already chosen), `neighbours` option.
    Neighbour {
        /// The chosen memory it sits next to.
        of: i64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Search(r) => write!(f, "search #{r}"),
            Reason::Link { from, kind } => write!(f, "link {kind} #{from}"),
            Reason::Neighbour { of } => write!(f, "neighbour of #{of}"),
        }
    }
}

/// One chosen memory: `tokens` is what its own text costs in the context (its line or
/// JSON object, mark included, headers not), `score` its priority when chosen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// Rowid of the memory.
    pub(crate) id: i64,
    /// Tokens of its rendered text in the context.
    pub(crate) tokens: usize,
    /// Priority when it was chosen (hits: the hybrid score).
    pub(crate) score: f64,
    /// Why it is there; `contradicts` lists the chosen memories it contradicts.
    pub(crate) reason: Reason,
    /// Chosen memories joined to this one by a `contradicts` link.
    pub(crate) contradicts: Vec<i64>,
}

/// An assembled context: the text, its token count, and the chosen memories in
/// selection order (best first).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Assembled {
    /// The context block (empty when nothing fits).
    pub(crate) text: String,
    /// Tokens of `text` (model tokenizer, no special tokens); at most the budget.
    pub(crate) tokens: usize,
    /// Chosen memories, best first.
    pub(crate) items: Vec<Item>,
}

/// Where assembly reads memories, links and neighbours: the table now ([`Store`]) or the
/// table as of a version ([`AsOfSource`]).
pub(crate) trait Source {
    /// The rows of `ids` that exist, with the id of the memory superseding each (if any).
    ///
    /// # Errors
    /// SQLite errors.
    fn rows_of(&self, ids: &[i64]) -> Result<HashMap<i64, (Row, Option<i64>)>>;
    /// Every link from or to one of `ids`.
    ///
    /// # Errors
    /// SQLite errors.
    fn links_of(&self, ids: &[i64]) -> Result<Vec<Link>>;
    /// `(id, neighbour)`: the `window` memories stored before and after each of `ids` in
    /// its namespace (by id).
    ///
    /// # Errors
    /// SQLite errors.
    fn neighbours_of(&self, ids: &[i64], window: usize) -> Result<Vec<(i64, i64)>>;
    /// The time expiry is judged at, ms since the Unix epoch.
    fn now(&self) -> i64;
}

impl Source for Store {
    fn rows_of(&self, ids: &[i64]) -> Result<HashMap<i64, (Row, Option<i64>)>> {
        Store::rows_of(self, ids)
    }
    fn links_of(&self, ids: &[i64]) -> Result<Vec<Link>> {
        Store::links_of(self, ids)
    }
    fn neighbours_of(&self, ids: &[i64], window: usize) -> Result<Vec<(i64, i64)>> {
        Store::neighbours_of(self, ids, window)
    }
    fn now(&self) -> i64 {
        row::now_ms()
    }
}

/// The table as it was at a version: the current rows, links and ids with every change
/// made since undone ([`Store::undo_to`]), judged at that version's clock. What
/// `AND as_of = ?` shows of the same version (rows, `supersedes` links, expiry).
pub(crate) struct AsOfSource<'a> {
    /// The table now.
    pub(crate) store: &'a Store,
    /// The changes since the version, undone.
    pub(crate) undo: Undo,
    /// The version's time, ms since the Unix epoch (expiry is judged at it).
    pub(crate) clock: i64,
}

impl AsOfSource<'_> {
    /// Rows as of the version, without their `superseded_by`.
    fn plain_rows(&self, ids: &[i64]) -> Result<HashMap<i64, Row>> {
        let mut out: HashMap<i64, Row> = self
            .store
            .rows_of(ids)?
            .into_iter()
            .map(|(id, (r, _))| (id, r))
            .collect();
        for id in ids {
            if let Some(then) = self.undo.rows.get(id) {
                match then {
                    Some(r) => out.insert(*id, r.clone()),
                    None => out.remove(id),
                };
            }
        }
        Ok(out)
    }
}

impl Source for AsOfSource<'_> {
    fn rows_of(&self, ids: &[i64]) -> Result<HashMap<i64, (Row, Option<i64>)>> {
        let rows = self.plain_rows(ids)?;
        let mut by: HashMap<i64, i64> = HashMap::new();
        for l in self.links_of(ids)? {
            if l.kind == SUPERSEDES {
                let e = by.entry(l.dst).or_insert(l.src);
                *e = (*e).max(l.src);
            }
        }
        Ok(rows
            .into_iter()
            .map(|(id, r)| (id, (r, by.get(&id).copied())))
            .collect())
    }

    fn links_of(&self, ids: &[i64]) -> Result<Vec<Link>> {
        let wanted: HashSet<i64> = ids.iter().copied().collect();
        let mut out: Vec<Link> = self
            .store
            .links_of(ids)?
            .into_iter()
            .filter(|l| {
                !self
                    .undo
                    .links
                    .contains_key(&(l.src, l.kind.clone(), l.dst))
            })
            .collect();
        let mut then: Vec<&Link> = self
            .undo
            .links
            .values()
            .flatten()
            .filter(|l| wanted.contains(&l.src) || wanted.contains(&l.dst))
            .collect();
        then.sort_by(|a, b| (a.src, &a.kind, a.dst).cmp(&(b.src, &b.kind, b.dst)));
        out.extend(then.into_iter().cloned());
        Ok(out)
    }

    fn neighbours_of(&self, ids: &[i64], window: usize) -> Result<Vec<(i64, i64)>> {
        if window == 0 || ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.plain_rows(ids)?;
        // Each namespace's ids as of the version: now's, minus the memories absent or in
        // another namespace then, plus those there then.
        let mut by_ns: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for r in rows.values() {
            if by_ns.contains_key(r.namespace.as_str()) {
                continue;
            }
            let ns = r.namespace.as_str();
            let mut list: Vec<i64> = self
                .store
                .ids(Some(ns))?
                .into_iter()
                .filter(|id| !self.undo.rows.contains_key(id))
                .collect();
            list.extend(
                self.undo.rows.iter().filter_map(|(id, then)| {
                    then.as_ref().filter(|t| t.namespace == ns).map(|_| *id)
                }),
            );
            list.sort_unstable();
            list.dedup();
            by_ns.insert(ns, list);
        }
        let mut out = Vec::new();
        for id in ids {
            let Some(r) = rows.get(id) else { continue };
            let Some(list) = by_ns.get(r.namespace.as_str()) else {
                continue;
            };
            let Ok(at) = list.binary_search(id) else {
                continue;
            };
            let lo = at.saturating_sub(window);
            let hi = at.saturating_add(window).min(list.len() - 1);
            for (j, other) in list.iter().enumerate().take(hi + 1).skip(lo) {
                if j != at {
                    out.push((*id, *other));
                }
            }
        }
        Ok(out)
    }

    fn now(&self) -> i64 {
        self.clock
    }
}

/// A candidate during selection.
#[derive(Debug, Clone)]
struct Cand {
    row: Row,
    priority: f64,
    reason: Reason,
    /// Tokens of its unmarked piece.
    tokens: usize,
}

/// Heap entry: priority, then the lower id first.
#[derive(Debug, PartialEq)]
struct Entry(f64, i64);

impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// `YYYY-MM-DD` (UTC) of `ms` since the Unix epoch (civil-from-days, proleptic
/// Gregorian).
pub(crate) fn day_of(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The header of a group (none in JSON).
fn header(format: Format, namespace: &str, day: &str) -> String {
    match format {
        Format::Text => format!("# {namespace}, {day}"),
        Format::Markdown => format!("## {namespace}, {day}"),
        Format::Json => String::new(),
    }
}

/// The text of one memory in the context.
fn piece(format: Format, row: &Row, contradicts: &[i64]) -> String {
    let mark = if contradicts.is_empty() {
        String::new()
    } else {
        let others: Vec<String> = contradicts.iter().map(|c| format!("#{c}")).collect();
        format!("[#{} contradicts {}] ", row.id, others.join(", "))
    };
    match format {
        Format::Text => format!("{mark}{}", row.content),
        Format::Markdown => format!("- {mark}{}", row.content.replace('\n', "\n  ")),
        Format::Json => {
            let mut m = Map::new();
            m.insert("id".into(), row.id.into());
            m.insert("namespace".into(), row.namespace.clone().into());
            m.insert("date".into(), day_of(row.created_at).into());
            m.insert("content".into(), row.content.clone().into());
            if !contradicts.is_empty() {
                m.insert("contradicts".into(), contradicts.to_vec().into());
            }
            Value::Object(m).to_string()
        }
    }
}

/// Lays out the chosen rows in reading order (see the module docs).
fn render(format: Format, chosen: &[(&Row, Vec<i64>)]) -> String {
    if chosen.is_empty() {
        return String::new();
    }
    // Namespaces in the order of their best memory; inside one, storage order.
    let mut ns_order: Vec<&str> = Vec::new();
    for (r, _) in chosen {
        if !ns_order.contains(&r.namespace.as_str()) {
            ns_order.push(&r.namespace);
        }
    }
    let mut ordered: Vec<&(&Row, Vec<i64>)> = chosen.iter().collect();
    ordered.sort_by_key(|(r, _)| {
        let ns = ns_order.iter().position(|n| *n == r.namespace);
        (ns, r.created_at, r.id)
    });
    let mut parts: Vec<String> = Vec::new();
    let mut last: Option<(&str, String)> = None;
    for (r, c) in ordered {
        let day = day_of(r.created_at);
        if format != Format::Json && last.as_ref() != Some(&(r.namespace.as_str(), day.clone())) {
            if last.is_some() && format == Format::Markdown {
                parts.push(String::new());
            }
            parts.push(header(format, &r.namespace, &day));
            if format == Format::Markdown {
                parts.push(String::new());
            }
        }
        last = Some((r.namespace.as_str(), day));
        parts.push(piece(format, r, c));
    }
    match format {
        Format::Json => format!("{{\"context\":[{}]}}", parts.join(",")),
        _ => parts.join("\n"),
    }
}

/// Assembles the context of `hits` (hybrid search `(id, score)`, best first, expired and
/// superseded memories already left out) within `budget` tokens, reading rows and links
/// from `store` (the table now, or as of a version) and counting tokens with `count` (see
/// the module docs).
///
/// # Errors
/// SQLite errors; the errors of `count` (the tokenizer).
pub(crate) fn assemble(
    store: &dyn Source,
    hits: &[(i64, f64)],
    budget: usize,
    opts: &Options,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Assembled> {
    let hits: Vec<(i64, f64)> = hits
        .iter()
        .copied()
        .filter(|(_, s)| opts.min_score.is_none_or(|m| *s >= m))
        .collect();
    if hits.is_empty() || budget == 0 {
        return Ok(Assembled::default());
    }
    let hit_ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
    let links = store.links_of(&hit_ids)?;
    let pairs = store.neighbours_of(&hit_ids, opts.neighbours)?;
    let mut wanted: Vec<i64> = hit_ids.clone();
    wanted.extend(links.iter().flat_map(|l| [l.src, l.dst]));
    wanted.extend(pairs.iter().map(|p| p.1));
    wanted.sort_unstable();
    wanted.dedup();
    let now = store.now();
    let rows: HashMap<i64, Row> = store
        .rows_of(&wanted)?
        .into_iter()
        .filter(|(_, (r, by))| {
            by.is_none()
                && !r.expired(now)
                && opts.namespace.as_ref().is_none_or(|ns| *ns == r.namespace)
        })
        .map(|(id, (r, _))| (id, r))
        .collect();
    let chosen = select(&hits, &rows, &links, &pairs, budget, opts, count)?;
    finish(chosen, &links, budget, opts.format, count)
}

/// The greedy selection of step 2: returns the chosen candidates in selection order.
fn select(
    hits: &[(i64, f64)],
    rows: &HashMap<i64, Row>,
    links: &[Link],
    pairs: &[(i64, i64)],
    budget: usize,
    opts: &Options,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Vec<Cand>> {
    // Links and neighbours by the memory they start from.
    let mut linked: BTreeMap<i64, Vec<(i64, &str)>> = BTreeMap::new();
    for l in links {
        linked.entry(l.src).or_default().push((l.dst, &l.kind));
        linked.entry(l.dst).or_default().push((l.src, &l.kind));
    }
    let mut next_to: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(a, b) in pairs {
        next_to.entry(a).or_default().push(b);
    }
    let mut cands: HashMap<i64, (f64, Reason)> = HashMap::new();
    let mut heap = BinaryHeap::new();
    for (rank, &(id, score)) in hits.iter().enumerate() {
        if rows.contains_key(&id) && !cands.contains_key(&id) {
            cands.insert(id, (score, Reason::Search(rank + 1)));
            heap.push(Entry(score, id));
        }
    }
    let format = opts.format;
    // Fixed cost of a non-empty context (the JSON wrapper; the text formats have none).
    let frame = match format {
        Format::Json => count("{\"context\":[]}")?,
        _ => 0,
    };
    let separator = match format {
        Format::Json => count(",")?,
        _ => 0,
    };
    let mut used = 0usize;
    let mut groups: HashMap<(String, String), usize> = HashMap::new();
    let mut chosen: Vec<Cand> = Vec::new();
    let mut done: HashSet<i64> = HashSet::new();
    while let Some(Entry(priority, id)) = heap.pop() {
        if done.contains(&id) {
            continue;
        }
        let (Some(row), Some((base, reason))) = (rows.get(&id), cands.get(&id)) else {
            continue;
        };
        let day = day_of(row.created_at);
        let group = (row.namespace.clone(), day.clone());
        let n = groups.get(&group).copied().unwrap_or(0);
        let effective = *base * (1.0 - opts.diversity).powi(n.min(64) as i32);
        if priority > effective {
            // Its group filled up since it was queued (diversity): queue it again lower.
            heap.push(Entry(effective, id));
            continue;
        }
        if priority < effective {
            continue; // a stale entry: the candidate was queued again higher
        }
        done.insert(id);
        // A whitespace-separated word is at least one WordPiece token (unless the
        // normalizer removes all of it: then this skip is only a missed fit, never an
        // overrun): a memory with more words than the budget has left is skipped
        // without tokenizing it.
        if used + row.content.split_whitespace().count() > budget {
            continue;
        }
        let own = count(&piece(format, row, &[]))?;
        let head = if n == 0 && format != Format::Json {
            count(&header(format, &row.namespace, &day))?
        } else {
            0
        };
        let extra = if chosen.is_empty() { frame } else { separator };
        let cost = own + head + extra;
        if used + cost > budget {
            continue;
        }
        used += cost;
        *groups.entry(group).or_insert(0) += 1;
        let reason = reason.clone();
        let cand = Cand {
            row: row.clone(),
            priority: effective,
            reason,
            tokens: own,
        };
        let mut push = |other: i64, p: f64, r: Reason| {
            if done.contains(&other) || !rows.contains_key(&other) {
                return;
            }
            if cands.get(&other).is_none_or(|(b, _)| p > *b) {
                cands.insert(other, (p, r));
                heap.push(Entry(p, other));
            }
        };
        // One hop: the links and (option) neighbours of a search hit become candidates.
        if matches!(cand.reason, Reason::Search(_)) {
            for (other, kind) in linked.get(&id).into_iter().flatten() {
                push(
                    *other,
                    effective * LINK_FACTOR,
                    Reason::Link {
                        from: id,
                        kind: (*kind).to_string(),
                    },
                );
            }
            for other in next_to.get(&id).into_iter().flatten() {
                push(
                    *other,
                    effective * NEIGHBOUR_FACTOR,
                    Reason::Neighbour { of: id },
                );
            }
        }
        chosen.push(cand);
    }
    Ok(chosen)
}

/// Step 3: marks contradicting pairs, renders, and drops the lowest-priority memory
/// while the whole text exceeds the budget (marks add tokens the selection did not
/// count).
fn finish(
    mut chosen: Vec<Cand>,
    links: &[Link],
    budget: usize,
    format: Format,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Assembled> {
    loop {
        let ids: HashSet<i64> = chosen.iter().map(|c| c.row.id).collect();
        let mut contra: HashMap<i64, Vec<i64>> = HashMap::new();
        for l in links.iter().filter(|l| l.kind == CONTRADICTS) {
            if l.src != l.dst && ids.contains(&l.src) && ids.contains(&l.dst) {
                contra.entry(l.src).or_default().push(l.dst);
                contra.entry(l.dst).or_default().push(l.src);
            }
        }
        for v in contra.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        let marked: Vec<(&Row, Vec<i64>)> = chosen
            .iter()
            .map(|c| (&c.row, contra.get(&c.row.id).cloned().unwrap_or_default()))
            .collect();
        let text = render(format, &marked);
        let tokens = count(&text)?;
        if tokens <= budget {
            let items = marked
                .iter()
                .zip(&chosen)
                .map(|((r, c), cand)| {
                    Ok(Item {
                        id: r.id,
                        tokens: if c.is_empty() {
                            cand.tokens
                        } else {
                            count(&piece(format, r, c))?
                        },
                        score: cand.priority,
                        reason: cand.reason.clone(),
                        contradicts: c.clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Assembled {
                text,
                tokens,
                items,
            });
        }
        // Drop the lowest-priority memory (the last chosen among the lowest).
        let worst = chosen
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.priority.total_cmp(&b.1.priority).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        match worst {
            Some(i) => {
                chosen.remove(i);
            }
            None => return Ok(Assembled::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, ns: &str, content: &str, created_at: i64) -> Row {
        Row {
            id,
            content: content.into(),
            namespace: ns.into(),
            tags: "[]".into(),
            metadata: "{}".into(),
            source: None,
            importance: 0.5,
            created_at,
            updated_at: created_at,
            expires_at: None,
        }
    }

    #[test]
    fn days_are_civil_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_700_000_000_000), "2023-11-14");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(-1), "1969-12-31");
    }

    #[test]
    fn options_parse_and_refuse() {
        let o = Options::parse(
            "f",
            Some(r#"{"format":"json","neighbours":2,"diversity":0.3}"#),
        );
        assert_eq!(o.as_ref().map(|o| o.format).ok(), Some(Format::Json));
        for bad in [
            "[1]",
            "{",
            r#"{"colour":1}"#,
            r#"{"format":"xml"}"#,
            r#"{"diversity":1}"#,
            r#"{"neighbours":-1}"#,
            r#"{"as_of":true}"#,
            r#"{"as_of":""}"#,
            r#"{"as_of":1.5}"#,
        ] {
            assert!(Options::parse("f", Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(Options::parse("f", None).ok(), Some(Options::default()));
    }

    #[test]
    fn layout_groups_by_namespace_then_storage_order() {
        let a = row(3, "b", "third", 2_000);
        let b = row(1, "a", "first", 1_000);
        let c = row(2, "b", "second", 1_000);
        let text = render(Format::Text, &[(&a, vec![]), (&b, vec![]), (&c, vec![2])]);
        assert_eq!(
            text,
            "# b, 1970-01-01\n[#2 contradicts #2] second\nthird\n# a, 1970-01-01\nfirst"
        );
        let json = render(Format::Json, &[(&b, vec![])]);
        let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        assert_eq!(v["context"][0]["content"], "first");
        assert_eq!(render(Format::Markdown, &[]), "");
    }

    /// Tokens as whitespace-separated words (the real count is the tokenizer's).
    fn words(s: &str) -> Result<usize> {
        Ok(s.split_whitespace().count())
    }

    #[cfg(feature = "bundled")]
    #[test]
    fn assembly_respects_budget_links_and_supersession() {
        use crate::table::MemoryTable;
        use crate::table::write::{NewRow, OnConflict};
        let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        let args = [
            "dim=2".to_string(),
            "auto_embed=off".to_string(),
            "dedup=off".to_string(),
        ];
        let t = MemoryTable::create(conn, "main", "m", &args).unwrap_or_else(|e| panic!("{e}"));
        let mut ids = Vec::new();
        for (i, text) in ["one two three", "four five", "six", "seven eight nine ten"]
            .iter()
            .enumerate()
        {
            let r = NewRow {
                content: (*text).into(),
                namespace: "default".into(),
                tags: "[]".into(),
                metadata: "{}".into(),
                importance: 0.5,
                embedding: Some(vec![1.0, i as f32]),
                created_at: Some(i as i64),
                ..NewRow::default()
            };
            ids.push(
                t.insert(r, OnConflict::Abort)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let s = &t.store;
        s.add_link(ids[0], ids[3], "contradicts", 1.0, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        s.add_link(ids[2], ids[1], "supersedes", 1.0, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let hits = [(ids[0], 0.9), (ids[2], 0.5)];
        let run = |budget| {
            assemble(s, &hits, budget, &Options::default(), &words)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // Header "# default, 1970-01-01" is 3 words; "one two three" 3; the linked
        // contradicting memory 4 + its mark 4.
        // Smaller than every candidate with its header: empty, never a cut memory.
        assert_eq!(run(3).text, "");
        // The best hit does not fit; a smaller one after it does.
        assert_eq!(run(5).text, "# default, 1970-01-01\nsix");
        let a = run(6);
        assert_eq!(a.text, "# default, 1970-01-01\none two three");
        let all = run(100);
        let got: Vec<(i64, String)> = all
            .items
            .iter()
            .map(|i| (i.id, i.reason.to_string()))
            .collect();
        // ids[1] is superseded by ids[2]: never in; ids[3] comes in by its link.
        assert_eq!(
            got,
            vec![
                (ids[0], "search #1".to_string()),
                (ids[3], format!("link contradicts #{}", ids[0])),
                (ids[2], "search #2".to_string()),
            ]
        );
        assert!(all.text.contains(&format!(
            "[#{} contradicts #{}] one two three",
            ids[0], ids[3]
        )));
        for b in 0..40 {
            let a = run(b);
            assert!(words(&a.text).unwrap_or(usize::MAX) <= b, "{b}: {}", a.text);
            assert_eq!(a, run(b), "deterministic");
        }
    }

    #[test]
    fn pool_grows_with_budget() {
        assert_eq!(pool_size(0), POOL_MIN);
        assert_eq!(pool_size(512), POOL_MIN);
        assert_eq!(pool_size(1024), POOL_MIN);
        assert_eq!(pool_size(4096), 256);
        assert_eq!(pool_size(8192), 512);
        assert_eq!(pool_size(usize::MAX), crate::search::MAX_K as usize);
    }
}
