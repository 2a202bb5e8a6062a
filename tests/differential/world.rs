//! The random-operations run: the [`World`] of the tables of [`MEMS`], their oracles, the
//! two connections, and the writes and transactions applied to both; its checks are in
//! [`checks`].

mod branch;
mod checks;

use rusqlite::{Connection, params};

use super::*;
use crate::common::oracle::*;
use crate::common::rng::Rng;
use crate::common::search::*;
use crate::common::*;

/// What the inserts into one table did, and what the checks saw.
#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub inserted: usize,
    pub duplicate: usize,
    pub superseded: usize,
    pub explicit: usize,
    /// Outcomes validated against an exact near-duplicate search.
    pub strict: usize,
    /// `inserted` where the search was HNSW, checked by brute force (sampled).
    pub graph_checked: usize,
    /// Of those, a live memory at >= the threshold existed (a recall miss).
    pub graph_missed: usize,
    pub hits: usize,
    pub wanted: usize,
    pub own_vector: usize,
}

pub struct World {
    pub path: String,
    pub w: Connection,
    pub r: Connection,
    pub rng: Rng,
    pub o: Vec<Oracle>,
    pub stats: Vec<Stats>,
    pub in_tx: bool,
    pub savepoints: Vec<String>,
    pub sp_counter: usize,
    pub next_explicit: i64,
    /// Per table: its last INSERT ran inside the open transaction.
    pub inserted_in_tx: Vec<bool>,
    /// Brute-force check of `inserted` outcomes on the HNSW path: probability.
    pub miss_sample: f64,
    pub ops: usize,
    pub checks: usize,
    pub integrity: usize,
    pub commits: usize,
    pub rollbacks: usize,
    pub largest_tx: usize,
    /// Snapshots taken (name, every oracle's rows then), outside transactions.
    pub snaps: Vec<(String, Vec<State>)>,
    /// As-of comparisons and restores done.
    pub as_of_checks: usize,
    pub restores: usize,
    /// The tables written and checked: [`MEMS`], then the branches of the live episode.
    pub tabs: Vec<Tab>,
    /// The live branch episode (`branch.rs`).
    pub branch: Option<branch::Episode>,
    /// Branch episodes, merges and diff comparisons done.
    pub branch_stats: branch::Counts,
}

/// One table under test: one of [`MEMS`], or a branch of one.
#[derive(Clone, Debug)]
pub struct Tab {
    pub name: String,
    pub kind: Kind,
    /// Index into `World::o`.
    pub oracle: usize,
    pub exact_max: usize,
    /// A branch: the index of its base in `World::tabs`.
    pub base: Option<usize>,
}

/// One random search per table.
pub struct Probe {
    pub q: Vec<f32>,
    pub k: usize,
    pub ns: Option<&'static str>,
    pub include: bool,
    pub word: &'static str,
}
impl World {
    fn exec(&self, sql: &str) {
        if trace_on() {
            eprintln!("[{}] {sql}", self.ops);
        }
        self.w
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("op {}: {sql}: {e}", self.ops));
    }

    fn trace(&self, msg: impl FnOnce() -> String) {
        if trace_on() {
            eprintln!("[{}] {}", self.ops, msg());
        }
    }

    /// The tables of oracle `oi`.
    fn tables_of(&self, oi: usize) -> Vec<usize> {
        (0..self.tabs.len())
            .filter(|t| self.tabs[*t].oracle == oi)
            .collect()
    }

    /// The oracles of explicit-id tables (the base's and its branch's).
    fn explicit_oracles(&self) -> Vec<usize> {
        (0..self.o.len())
            .filter(|oi| self.tabs.iter().any(|t| t.oracle == *oi && !t.kind.dedup()))
            .collect()
    }

    /// A random memory of oracle `oi` to write; a branch's is often the one its base's
    /// oracle got (`picked`, by oracle), so that merges meet conflicts.
    fn pick_id(&mut self, oi: usize, picked: &[Option<i64>]) -> Option<i64> {
        if let Some(ep) = &self.branch
            && oi == ep.oracle
            && let Some(Some(id)) = picked.get(ep.base_oracle)
            && self.o[oi].rows.contains_key(id)
            && self.rng.chance(0.4)
        {
            return Some(*id);
        }
        self.o[oi].random_id(&mut self.rng)
    }

    /// New connections (the writer and the second one).
    fn reopen(&mut self) {
        self.ops += 1;
        self.trace(|| "reopen".into());
        let path = self.path.clone();
        self.w = open(&path);
        self.r = open(&path);
    }

    fn tx_open(&self) -> bool {
        self.in_tx || !self.savepoints.is_empty()
    }

    fn content(&mut self) -> String {
        let n = 1 + self.rng.below(5);
        (0..n)
            .map(|_| *self.rng.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `s` in another case and spacing: the same normalised content.
    fn vary(&mut self, s: &str) -> String {
        let words: Vec<String> = s
            .split_whitespace()
            .map(|w| {
                if self.rng.chance(0.3) {
                    w.to_uppercase()
                } else {
                    w.to_string()
                }
            })
            .collect();
        let sep = if self.rng.chance(0.3) { "  " } else { " " };
        let lead = if self.rng.chance(0.2) { " " } else { "" };
        format!("{lead}{}", words.join(sep))
    }

    /// After a ROLLBACK or ROLLBACK TO: the oracles as the database has them now.
    fn reload(&mut self) {
        for o in &mut self.o {
            o.reload(&self.w);
        }
    }

    /// `subcog_integrity` of every table (after a COMMIT, a ROLLBACK or an autocommit
    /// write).
    fn integrity(&mut self, what: &str) {
        let ctx = format!("op {} after {what}", self.ops);
        for m in &self.tabs {
            assert_integrity(&self.w, &m.name, &ctx);
        }
        self.integrity += 1;
    }

    // ---- writes ----------------------------------------------------------------------

    fn insert(&mut self) {
        self.ops += 1;
        let base = ORow {
            content: self.content(),
            ns: self.rng.pick(NAMESPACES).to_string(),
            v: Some(self.rng.vector(DIM)),
            // One memory in six is born expired (TTL long past): searches must skip it.
            expired: self.rng.chance(1.0 / 6.0),
            tags: self.rng.tags(),
            sup: None,
        };
        self.next_explicit = self.next_explicit.max(self.o[EXPLICIT].max_id()) + 1;
        self.next_explicit += self.rng.below(3) as i64;
        let id = self.next_explicit;
        self.trace(|| format!("insert {id} ns={} expired={}", base.ns, base.expired));
        for oi in self.explicit_oracles() {
            // A branch's new memory: its own next id, or the base's (new on both sides:
            // renumbered by the merge).
            let id =
                if oi == EXPLICIT || (self.rng.chance(0.5) && !self.o[oi].rows.contains_key(&id)) {
                    id
                } else {
                    self.o[oi].max_id() + 1
                };
            // Never the very row the base gets in this op: the same row inserted on both
            // sides within one millisecond is one memory to a merge, not a renumbering, so
            // the two tables of an oracle could merge differently by timing alone.
            let row = if oi == EXPLICIT {
                base.clone()
            } else {
                ORow {
                    content: format!("{} (branch)", base.content),
                    ..base.clone()
                }
            };
            self.o[oi].insert(&self.w, id, row.clone());
            for t in self.tables_of(oi) {
                self.insert_explicit(t, id, &row);
            }
        }
        for t in 0..self.tabs.len() {
            if self.tabs[t].kind.dedup() {
                self.insert_dedup(t, &base);
            }
        }
    }

    fn insert_explicit(&mut self, t: usize, id: i64, row: &ORow) {
        let name = self.tabs[t].name.clone();
        self.w
            .execute(
                &format!(
                    "INSERT INTO {name}(id, content, namespace, embedding, expires_at, tags) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    id,
                    row.content,
                    row.ns,
                    row.v.as_deref().map(blob),
                    row.expired.then_some(EXPIRED),
                    tags_json(&row.tags)
                ],
            )
            .unwrap_or_else(|e| panic!("op {}: insert {id} into {name}: {e}", self.ops));
        assert_eq!(
            self.w.last_insert_rowid(),
            id,
            "op {}: {name}: last_insert_rowid() after an INSERT with id {id}",
            self.ops
        );
    }

    /// One INSERT into a dedup table, mostly without an id: its outcome is validated
    /// against brute force and applied to the oracle.
    fn insert_dedup(&mut self, t: usize, base: &ORow) {
        let m = self.tabs[t].clone();
        let oi = m.oracle;
        let mut row = base.clone();
        // An exact duplicate (other case and spacing) of a memory, mostly of its namespace.
        if self.rng.chance(0.2)
            && let Some(src) = self.o[oi].random_id(&mut self.rng)
        {
            let s = self.o[oi].rows[&src].clone();
            row.content = self.vary(&s.content);
            if self.rng.chance(0.8) {
                row.ns = s.ns;
            }
        }
        // A vector near one of the namespace (same, or on either side of the threshold).
        if self.rng.chance(0.3)
            && let Some(src) = self.o[oi].random_in(&mut self.rng, &row.ns)
            && let Some(v) = self.o[oi].rows[&src].v.clone()
        {
            let a = *self.rng.pick(&[0.0f32, 0.5, 1.5, 2.5, 3.5]);
            row.v = Some(if a == 0.0 { v } else { self.rng.near(&v, a) });
        }
        let Some(v) = row.v.clone() else {
            return;
        };
        let tags = tags_json(&row.tags);
        let expires = row.expired.then_some(EXPIRED);
        if self.rng.chance(0.04) {
            // An explicit id: a request for that row, never deduplicated.
            let id = self.o[oi].max_id() + 1 + self.rng.below(3) as i64;
            self.w
                .execute(
                    &format!(
                        "INSERT INTO {}(id, content, namespace, embedding, expires_at, tags) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        m.name
                    ),
                    params![id, row.content, row.ns, blob(&v), expires, tags],
                )
                .unwrap_or_else(|e| panic!("op {}: insert {id} into {}: {e}", self.ops, m.name));
            assert_eq!(
                self.w.last_insert_rowid(),
                id,
                "op {}: {}",
                self.ops,
                m.name
            );
            self.inserted_in_tx[t] = self.tx_open();
            self.stats[t].explicit += 1;
            self.o[oi].insert(&self.w, id, row);
            return;
        }
        // superseded_by is read-only: a value given to INSERT is ignored.
        let sql = if self.rng.chance(0.03) {
            format!(
                "INSERT INTO {}(content, namespace, embedding, expires_at, tags, superseded_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                m.name
            )
        } else {
            format!(
                "INSERT INTO {}(content, namespace, embedding, expires_at, tags) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                m.name
            )
        };
        let exact = self.o[oi].count_ns(&row.ns) <= m.exact_max;
        self.w
            .execute(&sql, params![row.content, row.ns, blob(&v), expires, tags])
            .unwrap_or_else(|e| panic!("op {}: {sql}: {e}", self.ops));
        let rowid = self.w.last_insert_rowid();
        self.inserted_in_tx[t] = self.tx_open();
        let ctx = format!(
            "op {}: {} INSERT '{}' ns={} (search {})",
            self.ops,
            m.name,
            row.content,
            row.ns,
            if exact { "exact" } else { "HNSW" }
        );
        let out = last_insert(&self.w, &m.name)
            .unwrap_or_else(|| panic!("{ctx}: subcog_last_insert is NULL right after it"));
        assert_eq!(
            out["id"].as_i64(),
            Some(rowid),
            "{ctx}: {out} vs last_insert_rowid()"
        );
        let dups = self.o[oi].live_duplicates(&row.ns, &row.content);
        let outcome = out["outcome"].as_str().unwrap_or("").to_string();
        self.trace(|| format!("{} -> {out}", m.name));
        if outcome == "duplicate" {
            assert!(
                dups.contains(&rowid),
                "{ctx}: {out}, but the live duplicates of that content in the namespace are {dups:?}"
            );
            let want = if m.kind == Kind::Merge {
                "merge"
            } else {
                "skip"
            };
            assert_eq!(out["action"].as_str(), Some(want), "{ctx}: {out}");
            self.stats[t].duplicate += 1;
            if m.kind == Kind::Merge {
                let new_tags = row.tags.clone();
                self.o[oi].update(&self.w, rowid, |r| {
                    for tag in new_tags {
                        if !r.tags.contains(&tag) {
                            r.tags.push(tag);
                        }
                    }
                });
            }
            return;
        }
        assert!(
            dups.is_empty(),
            "{ctx}: {out}, but live memories {dups:?} of the namespace have the same normalised content '{}'",
            normalise(&row.content)
        );
        assert_eq!(
            rowid,
            self.o[oi].max_id() + 1,
            "{ctx}: {out}: a new memory gets max(id) + 1"
        );
        match outcome.as_str() {
            "superseded" => {
                let old = out["supersedes"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{ctx}: {out} names no older memory"));
                let o = self.o[oi]
                    .rows
                    .get(&old)
                    .cloned()
                    .unwrap_or_else(|| panic!("{ctx}: {out}: memory {old} does not exist"));
                assert!(o.live(), "{ctx}: {out}: memory {old} is not live: {o:?}");
                assert_eq!(
                    o.ns, row.ns,
                    "{ctx}: {out}: memory {old} is of another namespace"
                );
                let ov = o.v.clone().unwrap_or_default();
                let sim = similarity(&v, &ov);
                assert!(
                    sim >= THRESHOLD,
                    "{ctx}: {out}: similarity to {old} is {sim}"
                );
                let reported = out["similarity"].as_f64().unwrap_or(f64::NAN);
                assert!(
                    (reported - sim).abs() <= 1e-4,
                    "{ctx}: {out}: reported similarity {reported}, brute force {sim}"
                );
                if exact {
                    let (best, d) = self.o[oi].nearest_live(&row.ns, &v).unwrap_or((old, 0.0));
                    assert_eq!(
                        d,
                        cosine(&v, &ov),
                        "{ctx}: {out}: the nearest live memory is {best} at distance {d}"
                    );
                    self.stats[t].strict += 1;
                }
                self.stats[t].superseded += 1;
                self.o[oi].insert(&self.w, rowid, row);
                self.o[oi].supersede(&self.w, old, rowid);
            }
            "inserted" => {
                let check = exact || self.rng.chance(self.miss_sample);
                if check && let Some((best, d)) = self.o[oi].nearest_live(&row.ns, &v) {
                    let sim = 1.0 - f64::from(d);
                    if exact {
                        assert!(
                            sim < THRESHOLD,
                            "{ctx}: {out}, but live memory {best} of the namespace is at similarity {sim}"
                        );
                    } else if sim >= THRESHOLD {
                        self.stats[t].graph_missed += 1;
                    }
                }
                if exact {
                    self.stats[t].strict += 1;
                } else if check {
                    self.stats[t].graph_checked += 1;
                }
                self.stats[t].inserted += 1;
                self.o[oi].insert(&self.w, rowid, row);
            }
            _ => panic!("{ctx}: unexpected outcome {out}"),
        }
    }

    /// UPDATE of one column of a random row, per oracle (the explicit-id tables alike).
    fn update(&mut self) {
        self.ops += 1;
        let col = self.rng.below(5);
        let mut picked = Vec::new();
        for oi in 0..self.o.len() {
            let Some(id) = self.pick_id(oi, &picked) else {
                picked.push(None);
                continue;
            };
            picked.push(Some(id));
            let (name, val): (&str, rusqlite::types::Value) = match col {
                0 => ("content", self.content().into()),
                1 => ("namespace", self.rng.pick(NAMESPACES).to_string().into()),
                2 => {
                    let v = match self.o[oi].random_id(&mut self.rng) {
                        Some(src) if self.rng.chance(0.3) => {
                            let v = self.o[oi].rows[&src].v.clone().unwrap_or_default();
                            self.rng.near(&v, 1.0)
                        }
                        _ => self.rng.vector(DIM),
                    };
                    ("embedding", blob(&v).into())
                }
                3 => (
                    "expires_at",
                    if self.rng.chance(0.5) {
                        EXPIRED.into()
                    } else {
                        rusqlite::types::Value::Null
                    },
                ),
                _ => ("tags", tags_json(&self.rng.tags()).into()),
            };
            self.trace(|| format!("update {} {id} {name}", self.o[oi].table));
            for t in self.tables_of(oi) {
                let table = &self.tabs[t].name;
                self.w
                    .execute(
                        &format!("UPDATE {table} SET {name} = ?1 WHERE id = ?2"),
                        params![val, id],
                    )
                    .unwrap_or_else(|e| panic!("op {}: update {table}: {e}", self.ops));
            }
            self.o[oi].update(&self.w, id, |r| match &val {
                rusqlite::types::Value::Text(s) if name == "content" => r.content = s.clone(),
                rusqlite::types::Value::Text(s) if name == "namespace" => r.ns = s.clone(),
                rusqlite::types::Value::Text(s) => {
                    r.tags = serde_json::from_str(s).unwrap_or_default();
                }
                rusqlite::types::Value::Blob(b) => r.v = Some(unblob(b)),
                rusqlite::types::Value::Integer(_) => r.expired = true,
                _ => r.expired = false,
            });
        }
    }

    fn delete(&mut self) {
        self.ops += 1;
        let mut picked = Vec::new();
        for oi in 0..self.o.len() {
            let Some(id) = self.pick_id(oi, &picked) else {
                picked.push(None);
                continue;
            };
            picked.push(Some(id));
            self.trace(|| format!("delete {} {id}", self.o[oi].table));
            for t in self.tables_of(oi) {
                let table = &self.tabs[t].name;
                self.w
                    .execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
                    .unwrap_or_else(|e| panic!("op {}: delete {table}: {e}", self.ops));
            }
            self.o[oi].delete(&self.w, id);
        }
    }

    fn purge(&mut self) {
        self.ops += 1;
        self.trace(|| "purge".into());
        for oi in 0..self.o.len() {
            let n = self.o[oi].purge(&self.w) as i64;
            for t in self.tables_of(oi) {
                let table = self.tabs[t].name.clone();
                if self.tabs[t].base.is_some() {
                    // subcog_purge is refused on a branch: its command purges.
                    self.exec(&format!("INSERT INTO {table}({table}) VALUES ('purge')"));
                    continue;
                }
                let got: i64 = self
                    .w
                    .query_row("SELECT subcog_purge(?1)", [&table], |r| r.get(0))
                    .unwrap_or_else(|e| panic!("op {}: purge {table}: {e}", self.ops));
                assert_eq!(got, n, "op {}: subcog_purge('{table}')", self.ops);
            }
        }
    }

    /// `superseded_by` is read-only: an UPDATE to another value fails and changes nothing;
    /// to the same value it is accepted.
    fn update_superseded_by(&mut self) {
        self.ops += 1;
        let t = self.rng.below(self.tabs.len());
        let (name, oi) = (self.tabs[t].name.clone(), self.tabs[t].oracle);
        let Some(id) = self.o[oi].random_id(&mut self.rng) else {
            return;
        };
        let cur = self.o[oi].rows[&id].sup;
        let other = cur.map_or(id + 1, |s| s + 1);
        let r = self.w.execute(
            &format!("UPDATE {name} SET superseded_by = ?1 WHERE id = ?2"),
            params![other, id],
        );
        match r {
            Err(e) => assert!(
                e.to_string().contains("superseded_by"),
                "op {}: {name}: the error of UPDATE superseded_by names no column: {e}",
                self.ops
            ),
            Ok(_) => panic!(
                "op {}: {name}: UPDATE SET superseded_by = {other} (was {cur:?}) of {id} succeeded",
                self.ops
            ),
        }
        // The accepted UPDATE still writes the row (`updated_at`, a history entry), so it
        // goes to every table of the oracle: tables sharing an oracle must stay alike to
        // the millisecond (their branches' merge plans compare `updated_at`).
        for t in self.tables_of(oi) {
            let name = &self.tabs[t].name;
            self.w
                .execute(
                    &format!("UPDATE {name} SET superseded_by = ?1 WHERE id = ?2"),
                    params![cur, id],
                )
                .unwrap_or_else(|e| {
                    panic!(
                        "op {}: {name}: UPDATE of superseded_by to its own value {cur:?}: {e}",
                        self.ops
                    )
                });
        }
    }

    fn command(&mut self, t: usize, cmd: &str) {
        self.ops += 1;
        let name = self.tabs[t].name.clone();
        self.exec(&format!("INSERT INTO {name}({name}) VALUES ('{cmd}')"));
    }

    // ---- transactions ----------------------------------------------------------------

    fn savepoint(&mut self) {
        self.ops += 1;
        self.sp_counter += 1;
        let name = format!("sp{}", self.sp_counter);
        self.exec(&format!("SAVEPOINT {name}"));
        self.savepoints.push(name);
    }

    fn rollback_to(&mut self) {
        if self.savepoints.is_empty() {
            return;
        }
        self.ops += 1;
        let i = self.rng.below(self.savepoints.len());
        let name = self.savepoints[i].clone();
        self.exec(&format!("ROLLBACK TO {name}"));
        self.savepoints.truncate(i + 1);
        self.reload();
    }

    /// RELEASE of a savepoint that does not end the transaction.
    fn release(&mut self) {
        let first = usize::from(!self.in_tx);
        if self.savepoints.len() <= first {
            return;
        }
        self.ops += 1;
        let i = first + self.rng.below(self.savepoints.len() - first);
        let name = self.savepoints[i].clone();
        self.exec(&format!("RELEASE {name}"));
        self.savepoints.truncate(i);
    }

    fn begin(&mut self) {
        self.ops += 1;
        if self.rng.chance(0.8) {
            self.exec("BEGIN");
            self.in_tx = true;
        } else {
            // A transaction opened by a SAVEPOINT: its RELEASE commits.
            self.savepoint();
        }
    }

    fn end(&mut self, commit: bool) {
        self.ops += 1;
        if commit {
            if self.in_tx {
                self.exec("COMMIT");
            } else {
                let name = self.savepoints[0].clone();
                self.exec(&format!("RELEASE {name}"));
            }
            self.commits += 1;
        } else {
            self.exec("ROLLBACK");
            self.rollbacks += 1;
            self.reload();
            for t in 0..self.tabs.len() {
                if self.tabs[t].kind.dedup() && self.inserted_in_tx[t] {
                    let out = last_insert(&self.w, &self.tabs[t].name);
                    assert!(
                        out.is_none(),
                        "op {}: {}: subcog_last_insert after a ROLLBACK of that INSERT: {out:?}",
                        self.ops,
                        self.tabs[t].name
                    );
                }
            }
        }
        self.in_tx = false;
        self.savepoints.clear();
        self.inserted_in_tx.iter_mut().for_each(|b| *b = false);
        self.integrity(if commit { "COMMIT" } else { "ROLLBACK" });
    }

    // ---- history ---------------------------------------------------------------------

    /// `subcog_snapshot` of every table (outside a transaction: the snapshot is
    /// committed), and the oracles' rows then.
    fn snapshot(&mut self) {
        self.ops += 1;
        let name = format!("s{}", self.snaps.len());
        self.trace(|| format!("snapshot {name}"));
        for m in MEMS {
            self.w
                .query_row(
                    "SELECT subcog_snapshot(?1, ?2)",
                    params![m.name, name],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or_else(|e| panic!("op {}: snapshot {}: {e}", self.ops, m.name));
        }
        let states = self.o[..ORACLES.len()].iter().map(Oracle::state).collect();
        self.snaps.push((name, states));
    }

    /// A random table's rows as of a random snapshot, against the oracle's rows then (on
    /// the writer, inside or outside a transaction).
    fn as_of_check(&mut self) {
        if self.snaps.is_empty() {
            return;
        }
        self.as_of_checks += 1;
        let i = self.rng.below(self.snaps.len());
        let t = self.rng.below(MEMS.len());
        let (name, states) = &self.snaps[i];
        for m in &MEMS[t..=t] {
            let ctx = format!("op {}: {} as of {name}", self.ops, m.name);
            let got = checks::rows_of(
                &self.w,
                &format!(
                    "SELECT id, content, namespace, tags, embedding, expires_at, superseded_by \
                     FROM {} WHERE as_of = '{name}'",
                    m.name
                ),
                &ctx,
            );
            let want = &states[m.oracle].rows;
            assert_eq!(got.len(), want.len(), "{ctx}: row count");
            for (id, row) in &got {
                assert_eq!(Some(row), want.get(id), "{ctx}: memory {id}");
            }
        }
    }

    /// `subcog_restore` of the tables of a random oracle to a random snapshot; the oracle
    /// takes that snapshot's rows (in the same transaction, when one is open).
    fn restore(&mut self) {
        if self.snaps.is_empty() {
            return;
        }
        self.ops += 1;
        self.restores += 1;
        let i = self.rng.below(self.snaps.len());
        let oi = self.rng.below(ORACLES.len());
        let name = self.snaps[i].0.clone();
        self.trace(|| format!("restore {name} (oracle {oi})"));
        for t in self.tables_of(oi) {
            let m = &self.tabs[t];
            self.w
                .query_row(
                    "SELECT subcog_restore(?1, ?2)",
                    params![m.name, name],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or_else(|e| panic!("op {}: restore {}: {e}", self.ops, m.name));
        }
        let state = self.snaps[i].1[oi].clone();
        self.o[oi].replace_all(&self.w, &state);
    }

    /// A write in autocommit mode (its own transaction), then the integrity checks.
    fn autocommit_write(&mut self) {
        match self.rng.below(10) {
            0..=5 => self.insert(),
            6..=7 => self.update(),
            8 => self.delete(),
            _ => self.update_superseded_by(),
        }
        self.integrity("an autocommit write");
    }

    /// A transaction of `n` inserts with other writes, savepoints and searches between.
    fn transaction(&mut self, n: usize) {
        if n == 1 && self.rng.chance(0.5) {
            self.insert();
            self.integrity("an autocommit INSERT");
            return;
        }
        if n >= 100 && self.rng.chance(0.5) {
            // Start from an empty pending list, so the sizes land on the thresholds.
            for t in 0..self.tabs.len() {
                self.command(t, "optimize");
            }
            self.integrity("'optimize'");
        }
        let big = n > 10_000;
        // Per-op probabilities scale down in big transactions (a ROLLBACK TO reloads the
        // oracles; a check scans them).
        let rare = if big { 0.02 } else { 1.0 };
        let writes_before = self.ops;
        self.begin();
        self.trace(|| format!("transaction of {n} inserts"));
        let mut inserts = 0;
        while inserts < n {
            // Cumulative probabilities; the rest are inserts.
            let r = self.rng.unit();
            let mut edge = 0.0;
            let mut next = |p: f64| {
                edge += p;
                r < edge
            };
            if next(0.08) {
                self.update();
            } else if next(0.06) {
                self.delete();
            } else if next(0.02 * rare) {
                self.savepoint();
            } else if next(0.02 * rare) {
                self.rollback_to();
            } else if next(0.02 * rare) {
                self.release();
            } else if next(0.004) {
                let t = self.rng.below(self.tabs.len());
                self.command(t, "optimize");
            } else if next(0.002) {
                self.purge();
            } else if next(0.003) {
                self.update_superseded_by();
            } else if next(0.03 * rare) {
                self.check();
            } else if next(0.01 * rare) {
                self.as_of_check();
            } else if next(0.004 * rare) {
                self.restore();
            } else {
                self.insert();
                inserts += 1;
            }
        }
        self.largest_tx = self.largest_tx.max(self.ops - writes_before);
        let commit = self.rng.chance(if big { 0.8 } else { 0.7 });
        self.end(commit);
        if big || self.rng.chance(0.5) {
            self.check();
        }
        if big || self.rng.chance(0.2) {
            self.compare_rows();
        }
    }

    /// Small transactions, autocommit writes, reopens and checks, for `budget` operations.
    fn filler(&mut self, budget: usize) {
        let start = self.ops;
        while self.ops - start < budget {
            match self.rng.below(21) {
                0..=6 => self.autocommit_write(),
                7..=14 => {
                    let n = 2 + self.rng.below(30);
                    self.transaction(n);
                }
                15 => self.reopen(),
                16 => {
                    self.purge();
                    self.integrity("subcog_purge");
                }
                18 => match self.rng.below(4) {
                    0 => self.snapshot(),
                    1 => {
                        self.restore();
                        self.integrity("subcog_restore");
                        self.compare_rows();
                    }
                    2 => self.diff_check(),
                    _ => self.as_of_check(),
                },
                19 if self.branch.is_none() => self.start_branch(),
                19 => self.merge(),
                17 => {
                    let t = self.rng.below(self.tabs.len());
                    let cmd = if self.rng.chance(0.8) {
                        "optimize"
                    } else {
                        "rebuild"
                    };
                    self.command(t, cmd);
                    self.integrity("'optimize' / 'rebuild'");
                }
                _ => self.check(),
            }
        }
        if self.branch.is_some() {
            self.merge();
        }
    }
}

/// One seeded run, to its end-of-run checks.
pub fn run(seed: u64, extra_ops: usize, big: bool) -> World {
    let (dir, path) = temp_db("diff", seed);
    let w = open(&path);
    let mode = if seed % 2 == 1 { "WAL" } else { "DELETE" };
    w.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| {
        r.get::<_, String>(0)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for m in MEMS {
        w.execute_batch(&format!(
            "CREATE VIRTUAL TABLE {} USING memories({})",
            m.name, m.options
        ))
        .unwrap_or_else(|e| panic!("{}: {e}", m.name));
    }
    let o: Vec<Oracle> = ORACLES.iter().map(|n| Oracle::create(&w, n)).collect();
    let r = open(&path);
    let mut world = World {
        path,
        w,
        r,
        rng: Rng(seed),
        o,
        stats: vec![Stats::default(); MEMS.len()],
        in_tx: false,
        savepoints: Vec::new(),
        sp_counter: 0,
        next_explicit: 0,
        inserted_in_tx: vec![false; MEMS.len()],
        miss_sample: 1.0,
        ops: 0,
        checks: 0,
        integrity: 0,
        commits: 0,
        rollbacks: 0,
        largest_tx: 0,
        snaps: Vec::new(),
        as_of_checks: 0,
        restores: 0,
        tabs: MEMS
            .iter()
            .map(|m| Tab {
                name: m.name.to_string(),
                kind: m.kind,
                oracle: m.oracle,
                exact_max: m.exact_max,
                base: None,
            })
            .collect(),
        branch: None,
        branch_stats: branch::Counts::default(),
    };
    let mut sizes: Vec<usize> = SIZES.to_vec();
    if big {
        sizes.push(BIG);
    }
    for i in (1..sizes.len()).rev() {
        let j = world.rng.below(i + 1);
        sizes.swap(i, j);
    }
    let share = extra_ops / sizes.len();
    for n in sizes {
        world.filler(share);
        world.miss_sample = if n > 10_000 { 0.05 } else { 1.0 };
        world.transaction(n);
        world.miss_sample = 1.0;
    }
    world.filler(extra_ops - share * (SIZES.len() + usize::from(big)));
    world.finish();
    let _ = std::fs::remove_dir_all(&dir);
    world
}
