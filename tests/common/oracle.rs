//! The differential tests' oracle: an ordinary table in the same database as the
//! `memories` tables (so every transaction, savepoint and rollback covers it alike) with an
//! in-memory copy of it that the brute-force checks read (reloaded from the table after
//! every rollback); the brute-force distances and KNN it is compared with.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::rng::Rng;
use super::{blob, unblob};

/// Cosine distance with the same formula as `Metric::Cosine` (sums in f64, same order,
/// clamped to [0, 2], returned as f32), so that distances compare exactly.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let d = (na * nb).sqrt();
    if d == 0.0 {
        1.0
    } else {
        (1.0 - dot / d).clamp(0.0, 2.0) as f32
    }
}

/// Cosine similarity as the near-duplicate check computes it: `1 - distance`, in f64.
pub fn similarity(a: &[f32], b: &[f32]) -> f64 {
    1.0 - f64::from(cosine(a, b))
}

/// Content as compared for exact duplicates (src/table/dedup.rs `normalise`): lowercase,
/// whitespace runs collapsed, trimmed.
pub fn normalise(s: &str) -> String {
    s.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tags as the table stores them: a compact JSON array.
pub fn tags_json(tags: &[String]) -> String {
    serde_json::Value::from(tags.to_vec()).to_string()
}

/// One memory as the oracle knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ORow {
    /// Content as inserted.
    pub content: String,
    /// Namespace.
    pub ns: String,
    /// The vector (`None`: not known yet, an auto-embedded row before its flush).
    pub v: Option<Vec<f32>>,
    /// Whether `expires_at` lies in the past (the tests only use the past or NULL).
    pub expired: bool,
    /// Tags, in the table's order.
    pub tags: Vec<String>,
    /// The id of the memory that supersedes this one.
    pub sup: Option<i64>,
}

impl ORow {
    /// Live: neither expired nor superseded (a dedup target).
    pub fn live(&self) -> bool {
        !self.expired && self.sup.is_none()
    }

    /// Returned by a search: unexpired, and not superseded unless `include_superseded`.
    pub fn visible(&self, include_superseded: bool) -> bool {
        !self.expired && (include_superseded || self.sup.is_none())
    }
}

/// An oracle's memories and `supersedes` links `(dst, src)` at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub rows: BTreeMap<i64, ORow>,
    pub links: BTreeSet<(i64, i64)>,
}

/// The oracle of one or more `memories` tables (tables given the same ids share one).
pub struct Oracle {
    /// Name of the ordinary table that mirrors `rows` transactionally.
    pub table: String,
    /// The writer's view of the memories.
    pub rows: BTreeMap<i64, ORow>,
    /// The `supersedes` links `(dst, src)` made by [`Oracle::supersede`]: a memory's `sup`
    /// is the largest `src` of its links (a merge of a branch can give it two).
    pub links: BTreeSet<(i64, i64)>,
    /// `(namespace, normalised content)` -> ids, for exact-duplicate look-ups.
    text: HashMap<(String, String), BTreeSet<i64>>,
    /// Namespace -> ids.
    by_ns: HashMap<String, BTreeSet<i64>>,
}

/// An `expires_at` long past (1 ms after the Unix epoch).
pub const EXPIRED: i64 = 1;

impl Oracle {
    /// Creates the oracle table `table` on `c`.
    pub fn create(c: &Connection, table: &str) -> Oracle {
        c.execute_batch(&format!(
            "CREATE TABLE {table}(id INTEGER PRIMARY KEY, content TEXT NOT NULL, \
             namespace TEXT NOT NULL, emb BLOB, expires_at INTEGER, tags TEXT NOT NULL, \
             superseded_by INTEGER); \
             CREATE TABLE {table}_links(dst INTEGER, src INTEGER, PRIMARY KEY (dst, src))"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        Oracle {
            table: table.to_string(),
            rows: BTreeMap::new(),
            links: BTreeSet::new(),
            text: HashMap::new(),
            by_ns: HashMap::new(),
        }
    }

    /// Reads the oracle table as `c` sees it.
    pub fn read(c: &Connection, table: &str) -> rusqlite::Result<BTreeMap<i64, ORow>> {
        let mut st = c.prepare_cached(&format!(
            "SELECT id, content, namespace, emb, expires_at, tags, superseded_by FROM {table}"
        ))?;
        let rows = st.query_map([], |r| {
            let tags: String = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                ORow {
                    content: r.get(1)?,
                    ns: r.get(2)?,
                    v: r.get::<_, Option<Vec<u8>>>(3)?.map(|b| unblob(&b)),
                    expired: r.get::<_, Option<i64>>(4)?.is_some(),
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                    sup: r.get(6)?,
                },
            ))
        })?;
        rows.collect()
    }

    /// Reloads the in-memory copy from the table (after a ROLLBACK or ROLLBACK TO).
    pub fn reload(&mut self, c: &Connection) {
        self.rows = Self::read(c, &self.table).unwrap_or_else(|e| panic!("{e}"));
        self.links = c
            .prepare(&format!("SELECT dst, src FROM {}_links", self.table))
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        self.text.clear();
        self.by_ns.clear();
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }

    fn write(&self, c: &Connection, id: i64) {
        let Some(r) = self.rows.get(&id) else {
            return;
        };
        c.prepare_cached(&format!(
            "INSERT OR REPLACE INTO {}(id, content, namespace, emb, expires_at, tags, superseded_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            self.table
        ))
        .and_then(|mut st| {
            st.execute(params![
                id,
                r.content,
                r.ns,
                r.v.as_deref().map(blob),
                r.expired.then_some(EXPIRED),
                tags_json(&r.tags),
                r.sup
            ])
        })
        .unwrap_or_else(|e| panic!("oracle write {id}: {e}"));
    }

    fn unindex(&mut self, id: i64) {
        if let Some(r) = self.rows.get(&id) {
            let key = (r.ns.clone(), normalise(&r.content));
            if let Some(s) = self.text.get_mut(&key) {
                s.remove(&id);
                if s.is_empty() {
                    self.text.remove(&key);
                }
            }
            if let Some(s) = self.by_ns.get_mut(&r.ns) {
                s.remove(&id);
            }
        }
    }

    fn index(&mut self, id: i64) {
        if let Some(r) = self.rows.get(&id) {
            self.text
                .entry((r.ns.clone(), normalise(&r.content)))
                .or_default()
                .insert(id);
            self.by_ns.entry(r.ns.clone()).or_default().insert(id);
        }
    }

    /// Adds memory `id`.
    pub fn insert(&mut self, c: &Connection, id: i64, row: ORow) {
        assert!(
            !self.rows.contains_key(&id),
            "oracle {}: id {id} exists",
            self.table
        );
        self.rows.insert(id, row);
        self.index(id);
        self.write(c, id);
    }

    /// Changes memory `id` with `f`.
    pub fn update(&mut self, c: &Connection, id: i64, f: impl FnOnce(&mut ORow)) {
        self.unindex(id);
        if let Some(r) = self.rows.get_mut(&id) {
            f(r);
        }
        self.index(id);
        self.write(c, id);
    }

    /// Deletes memory `id` and its supersession links in both directions.
    pub fn delete(&mut self, c: &Connection, id: i64) {
        self.unindex(id);
        self.rows.remove(&id);
        c.prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", self.table))
            .and_then(|mut st| st.execute([id]))
            .unwrap_or_else(|e| panic!("{e}"));
        let gone: Vec<(i64, i64)> = self
            .links
            .iter()
            .filter(|(d, s)| *d == id || *s == id)
            .copied()
            .collect();
        let mut freed: BTreeSet<i64> = self
            .rows
            .iter()
            .filter(|(_, r)| r.sup == Some(id))
            .map(|(i, _)| *i)
            .collect();
        for (d, s) in gone {
            self.set_link(c, d, s, false);
            freed.insert(d);
        }
        freed.remove(&id);
        for f in freed {
            self.resup(c, f);
        }
    }

    /// Adds (`on`) or removes the link `src` supersedes `dst` (not `sup`: see
    /// [`Oracle::resup`]).
    fn set_link(&mut self, c: &Connection, dst: i64, src: i64, on: bool) {
        let sql = if on {
            self.links.insert((dst, src));
            format!("INSERT INTO {}_links(dst, src) VALUES (?1, ?2)", self.table)
        } else {
            self.links.remove(&(dst, src));
            format!(
                "DELETE FROM {}_links WHERE dst = ?1 AND src = ?2",
                self.table
            )
        };
        c.prepare_cached(&sql)
            .and_then(|mut st| st.execute([dst, src]))
            .unwrap_or_else(|e| panic!("oracle link {src} -> {dst}: {e}"));
    }

    /// `sup` of `id` from its links: the largest memory that supersedes it.
    fn resup(&mut self, c: &Connection, id: i64) {
        let sup = self
            .links
            .range((id, i64::MIN)..=(id, i64::MAX))
            .next_back();
        let sup = sup.map(|(_, s)| *s);
        if self.rows.get(&id).is_some_and(|r| r.sup != sup) {
            self.update(c, id, |r| r.sup = sup);
        }
    }

    /// Memory `new` supersedes `old` (a link; `old`'s `sup` becomes the largest of its
    /// superseders).
    pub fn supersede(&mut self, c: &Connection, old: i64, new: i64) {
        self.set_link(c, old, new, true);
        self.resup(c, old);
    }

    /// Removes the link `new` supersedes `old`, if there is one.
    pub fn unlink(&mut self, c: &Connection, old: i64, new: i64) {
        self.set_link(c, old, new, false);
        self.resup(c, old);
    }

    /// The memories and links, as [`Oracle::replace_all`] takes them back.
    pub fn state(&self) -> State {
        State {
            rows: self.rows.clone(),
            links: self.links.clone(),
        }
    }

    /// Replaces every memory and link with `state`'s (a restore of the table to a
    /// snapshot).
    pub fn replace_all(&mut self, c: &Connection, state: &State) {
        c.execute_batch(&format!(
            "DELETE FROM {0}; DELETE FROM {0}_links",
            self.table
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        for id in ids {
            self.unindex(id);
        }
        self.rows.clear();
        self.links.clear();
        for (id, row) in &state.rows {
            self.insert(c, *id, row.clone());
        }
        for &(d, s) in &state.links {
            self.set_link(c, d, s, true);
        }
    }

    /// Deletes every expired memory (`subcog_purge`); returns how many.
    pub fn purge(&mut self, c: &Connection) -> usize {
        let ids: Vec<i64> = self
            .rows
            .iter()
            .filter(|(_, r)| r.expired)
            .map(|(i, _)| *i)
            .collect();
        for id in &ids {
            self.delete(c, *id);
        }
        ids.len()
    }

    /// Live memories of `ns` whose normalised content is `normalise(content)`.
    pub fn live_duplicates(&self, ns: &str, content: &str) -> Vec<i64> {
        self.text
            .get(&(ns.to_string(), normalise(content)))
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|id| self.rows.get(id).is_some_and(ORow::live))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A random id (`None` when empty): the first at or after a uniform draw between
    /// the smallest and the largest id (O(log n); rows after gaps come up more often).
    pub fn random_id(&self, rng: &mut Rng) -> Option<i64> {
        pick_from(
            self.rows.keys(),
            |x| self.rows.range(x..).next().map(|(k, _)| *k),
            rng,
        )
    }

    /// The largest id (0 when empty).
    pub fn max_id(&self) -> i64 {
        self.rows.keys().next_back().copied().unwrap_or(0)
    }

    /// Number of memories of `ns` (any state: the count the ANN compares with
    /// `exact_max`).
    pub fn count_ns(&self, ns: &str) -> usize {
        self.by_ns.get(ns).map_or(0, BTreeSet::len)
    }

    /// A random memory of `ns` (`None` when it has none).
    pub fn random_in(&self, rng: &mut Rng, ns: &str) -> Option<i64> {
        let s = self.by_ns.get(ns)?;
        pick_from(s.iter(), |x| s.range(x..).next().copied(), rng)
    }

    /// The nearest live memory of `ns` to `v` with a known vector:
    /// `(id, cosine distance)`, ties by id.
    pub fn nearest_live(&self, ns: &str, v: &[f32]) -> Option<(i64, f32)> {
        let mut best: Option<(i64, f32)> = None;
        for id in self.by_ns.get(ns).into_iter().flatten() {
            let Some(r) = self.rows.get(id) else { continue };
            if !r.live() {
                continue;
            }
            let Some(w) = &r.v else { continue };
            let d = cosine(v, w);
            if best.is_none_or(|(_, b)| d < b) {
                best = Some((*id, d));
            }
        }
        best
    }
}

/// The first id at or after a uniform draw between the first and the last of `ids`
/// (`at(x)`: the first id >= x).
fn pick_from<'a>(
    mut ids: impl DoubleEndedIterator<Item = &'a i64>,
    at: impl Fn(i64) -> Option<i64>,
    rng: &mut Rng,
) -> Option<i64> {
    let lo = *ids.next()?;
    let hi = ids.next_back().copied().unwrap_or(lo);
    at(lo + rng.below((hi - lo + 1) as usize) as i64)
}

/// Brute-force KNN over `rows`: the `k` visible rows (of `ns`) nearest to `q`, nearest
/// first, ties by id: `(id, distance)`.
pub fn brute_knn(
    rows: &BTreeMap<i64, ORow>,
    q: &[f32],
    k: usize,
    ns: Option<&str>,
    include_superseded: bool,
) -> Vec<(i64, f32)> {
    let mut all: Vec<(f32, i64)> = rows
        .iter()
        .filter(|(_, r)| r.visible(include_superseded) && ns.is_none_or(|n| r.ns == n))
        .filter_map(|(id, r)| r.v.as_ref().map(|v| (cosine(q, v), *id)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(d, id)| (id, d)).collect()
}
