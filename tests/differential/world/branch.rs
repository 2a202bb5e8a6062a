//! Branch episodes and diffs of a [`World`] (issue 11).
//!
//! An episode branches every table of one oracle (`subcog_branch` or `CREATE VIRTUAL
//! TABLE ... USING memories(branch_of=..., at=...)`) at the current version, at a snapshot
//! taken then or at an older snapshot, with an oracle of its own that starts as a plain
//! copy of the base's oracle at the fork. From then on the branches are tables like the
//! others: every write (the same generators, often on the ids the base's write took, so
//! that merges meet conflicts), every search, row and integrity check covers them, in
//! and out of transactions, ROLLBACK and reopens included. The episode ends with
//! `subcog_merge` (policy `fail`, `ours` or `theirs`; a refused `fail` is then redone with
//! `ours` or `theirs`), which the oracle computes itself, as the README states it:
//! for every memory, its row at the fork (*base*), in the target (*ours*) and in the
//! branch (*theirs*); changed in the branch only: taken; changed on both sides to
//! different rows: a conflict (`fail`: an error, nothing changes; `ours`: kept; `theirs`:
//! taken); new in the branch with an id the target holds: the next free id
//! (`renumbered`); `supersedes` links the branch added or removed likewise (one changed
//! on both sides is taken only under `theirs`; one whose ends are not both in the target
//! is skipped). The JSON result, `subcog_merge_conflicts` and the target's rows after it
//! must be the oracle's; both tables' `subcog_integrity` clean; the branches are dropped.
//!
//! A row is its columns and, as the table compares them, its `created_at` and
//! `updated_at`: the oracle cannot know the milliseconds a write ran at, so those two are
//! read from the tables (the base as of the fork, the target and the branch now) and
//! are the only thing the merge's model takes from the product.
//!
//! `subcog_diff` is compared with the oracle's plain copies of two versions: a base
//! table between two snapshots or from a snapshot to now, a branch from its fork to now.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::params;
use rusqlite::types::Value;
use serde_json::Value as Json;

use super::*;

/// Episodes, merges and diffs done.
#[derive(Default, Debug, Clone)]
pub struct Counts {
    pub episodes: usize,
    pub merges: usize,
    pub refused: usize,
    pub conflicts: usize,
    pub renumbered: usize,
    pub applied: usize,
    pub links: usize,
    pub diffs: usize,
}

/// A live branch episode.
pub struct Episode {
    /// The base tables' oracle.
    pub base_oracle: usize,
    /// The branches' oracle (the last of `World::o`).
    pub oracle: usize,
    /// The base's oracle at the fork.
    fork: State,
    /// Per branch: its index in `World::tabs`, its base's, and the fork version.
    tables: Vec<(usize, usize, i64)>,
}

/// `(created_at, updated_at)` by id.
type Times = BTreeMap<i64, (i64, i64)>;

/// A memory as the merge compares it: its columns (not `superseded_by`, a link) and
/// times.
type Ident = (ORow, (i64, i64));

/// The merge the oracle expects.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// `(id in the target, id in the branch)` of every memory taken (not the conflicts).
    steps: Vec<(i64, i64)>,
    conflicts: Vec<i64>,
    renumbered: BTreeMap<i64, i64>,
    /// `(src, dst, add, changed in the target too)`, ids in the target.
    links: Vec<(i64, i64, bool, bool)>,
}

fn ident(rows: &BTreeMap<i64, ORow>, times: &Times, id: i64, what: &str) -> Option<Ident> {
    let r = rows.get(&id)?;
    let t = times
        .get(&id)
        .unwrap_or_else(|| panic!("{what}: the oracle has memory {id}, the table has not"));
    Some((
        ORow {
            sup: None,
            ..r.clone()
        },
        *t,
    ))
}

/// The columns `subcog_diff` and the merge compare (not the embedding, not
/// `superseded_by`).
fn same_columns(a: &ORow, b: &ORow) -> bool {
    a.content == b.content && a.ns == b.ns && a.tags == b.tags && a.expired == b.expired
}

/// Whether the row JSON `v` (of `subcog_diff`, `subcog_merge`) is `want` (null: absent).
fn row_is(v: &Json, want: Option<&ORow>) -> bool {
    match want {
        None => v.is_null(),
        Some(w) => {
            let tags: Vec<String> = v["tags"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            v["content"].as_str() == Some(w.content.as_str())
                && v["namespace"].as_str() == Some(w.ns.as_str())
                && tags == w.tags
                && v["expires_at"].is_null() != w.expired
        }
    }
}

/// A JSON text column (NULL: `null`).
fn json_col(s: Option<String>) -> Json {
    s.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Json::Null)
}

impl World {
    fn times(&self, sql: &str, p: impl rusqlite::Params, ctx: &str) -> Times {
        let mut st = self
            .w
            .prepare(sql)
            .unwrap_or_else(|e| panic!("{ctx}: {sql}: {e}"));
        st.query_map(p, |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("{ctx}: {sql}: {e}"))
    }

    /// Branches every table of a random oracle (outside a transaction).
    pub(super) fn start_branch(&mut self) {
        self.ops += 1;
        let n = self.branch_stats.episodes;
        self.branch_stats.episodes += 1;
        let oi = self.rng.below(ORACLES.len());
        // The fork: now, a snapshot taken now, or an older snapshot.
        let (at, fork) = match self.rng.below(3) {
            1 => {
                self.snapshot();
                let (name, states) = &self.snaps[self.snaps.len() - 1];
                (Some(name.clone()), states[oi].clone())
            }
            2 if !self.snaps.is_empty() => {
                let (name, states) = &self.snaps[self.rng.below(self.snaps.len())];
                (Some(name.clone()), states[oi].clone())
            }
            _ => (None, self.o[oi].state()),
        };
        self.trace(|| format!("branch of oracle {oi} at {at:?}"));
        let oracle = self.o.len();
        let mut o = Oracle::create(&self.w, &format!("ob{n}"));
        o.replace_all(&self.w, &fork);
        self.o.push(o);
        let mut tables = Vec::new();
        for t in self.tables_of(oi) {
            let base = self.tabs[t].name.clone();
            let name = format!("{base}_b{n}");
            let ctx = format!("op {}: branch {name} of {base} at {at:?}", self.ops);
            let version: i64 = match &at {
                None => self
                    .w
                    .query_row("SELECT subcog_version(?1)", [&base], |r| r.get(0)),
                Some(s) => self.w.query_row(
                    "SELECT version FROM subcog_snapshots(?1) WHERE name = ?2",
                    [&base, s],
                    |r| r.get(0),
                ),
            }
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            if self.rng.chance(0.5) {
                let got: i64 = self
                    .w
                    .query_row(
                        "SELECT subcog_branch(?1, ?2, ?3)",
                        params![base, name, at],
                        |r| r.get(0),
                    )
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(got, version, "{ctx}: subcog_branch's fork version");
            } else {
                let at = at.as_ref().map_or(String::new(), |a| format!(", at='{a}'"));
                self.exec(&format!(
                    "CREATE VIRTUAL TABLE {name} USING memories(branch_of='{base}'{at})"
                ));
            }
            tables.push((self.tabs.len(), t, version));
            let tab = Tab {
                name,
                oracle,
                base: Some(t),
                ..self.tabs[t].clone()
            };
            self.tabs.push(tab);
            self.stats.push(Stats::default());
            self.inserted_in_tx.push(false);
        }
        self.branch = Some(Episode {
            base_oracle: oi,
            oracle,
            fork,
            tables,
        });
        self.integrity("a branch's creation");
        self.compare_rows();
        self.check();
    }

    /// Ends the episode: merges (sometimes after a reopen), then drops the branches.
    pub(super) fn merge(&mut self) {
        if self.rng.chance(0.3) {
            self.reopen();
        }
        let policy = *self.rng.pick(&["fail", "ours", "theirs"]);
        if !self.merge_with(policy) {
            let policy = *self.rng.pick(&["ours", "theirs"]);
            assert!(self.merge_with(policy), "a merge under '{policy}' refused");
        }
        let Some(ep) = self.branch.take() else {
            return;
        };
        for &(bt, _, _) in &ep.tables {
            self.exec(&format!("DROP TABLE {}", self.tabs[bt].name));
        }
        // The branches' searches and near-duplicate checks count for their bases.
        let first = ep.tables[0].0;
        let drained: Vec<Stats> = self.stats.drain(first..).collect();
        for (s, &(_, t, _)) in drained.iter().zip(&ep.tables) {
            let b = &mut self.stats[t];
            b.hits += s.hits;
            b.wanted += s.wanted;
            b.graph_checked += s.graph_checked;
            b.graph_missed += s.graph_missed;
        }
        self.tabs.truncate(first);
        self.inserted_in_tx.truncate(first);
        if let Some(o) = self.o.pop() {
            self.exec(&format!("DROP TABLE {0}; DROP TABLE {0}_links", o.table));
        }
        self.integrity("dropping the branches");
        self.compare_rows();
    }

    /// Computes, checks and applies `subcog_merge` of every branch under `policy`;
    /// `false`: `fail` met conflicts (and nothing changed).
    fn merge_with(&mut self, policy: &str) -> bool {
        let Some(ep) = self.branch.take() else {
            return true;
        };
        self.ops += 1;
        let plans: Vec<Plan> = ep
            .tables
            .iter()
            .map(|&(bt, t, version)| self.plan(&ep, bt, t, version))
            .collect();
        // The tables of one oracle hold the same rows: the same merge.
        for p in &plans[1..] {
            assert_eq!(
                p, &plans[0],
                "op {}: the merges of one oracle's tables",
                self.ops
            );
        }
        let plan = plans[0].clone();
        let refused = policy == "fail" && !plan.conflicts.is_empty();
        let mut result = Vec::new();
        for &(bt, t, _) in &ep.tables {
            let (branch, into) = (self.tabs[bt].name.clone(), self.tabs[t].name.clone());
            let ctx = format!(
                "op {}: subcog_merge('{branch}', '{into}', '{policy}')",
                self.ops
            );
            self.trace(|| format!("{ctx}: expecting {plan:?}"));
            self.check_conflicts(&ep, &plan, &branch, &into, &ctx);
            let version = |w: &World| int(&w.w, &format!("SELECT subcog_version('{into}')"));
            let before = version(self);
            let got = self.w.query_row(
                "SELECT subcog_merge(?1, ?2, ?3)",
                params![branch, into, policy],
                |r| r.get::<_, String>(0),
            );
            if refused {
                let e = match got {
                    Ok(j) => panic!(
                        "{ctx}: conflicts {:?} expected, it merged: {j}",
                        plan.conflicts
                    ),
                    Err(e) => e.to_string(),
                };
                assert!(e.contains("conflict"), "{ctx}: {e}");
                for c in &plan.conflicts {
                    assert!(e.contains(&c.to_string()), "{ctx}: {e} names no memory {c}");
                }
                assert_eq!(
                    version(self),
                    before,
                    "{ctx}: a refused merge changed {into}"
                );
                continue;
            }
            let got: Json = got
                .ok()
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_else(|| panic!("{ctx}: no JSON result"));
            result.push((ctx, got));
        }
        if refused {
            self.branch_stats.refused += 1;
            self.branch = Some(ep);
            self.integrity("a refused merge");
            self.compare_rows();
            return false;
        }
        let (applied, links) = self.apply(&ep, &plan, policy);
        for (ctx, got) in result {
            let ids = |v: &Json| -> Vec<i64> {
                v.as_array()
                    .map(|a| a.iter().filter_map(|c| c["id"].as_i64()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(
                ids(&got["conflicts"]),
                plan.conflicts,
                "{ctx}: conflicts {got}"
            );
            let renumbered: BTreeMap<i64, i64> = got["renumbered"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(renumbered, plan.renumbered, "{ctx}: renumbered {got}");
            assert_eq!(
                got["applied"].as_u64(),
                Some(applied as u64),
                "{ctx}: {got}"
            );
            assert_eq!(got["links"].as_u64(), Some(links as u64), "{ctx}: {got}");
            assert_eq!(got["policy"].as_str(), Some(policy), "{ctx}: {got}");
        }
        self.branch_stats.merges += ep.tables.len();
        self.branch_stats.conflicts += plan.conflicts.len();
        self.branch_stats.renumbered += plan.renumbered.len();
        self.branch_stats.applied += applied;
        self.branch_stats.links += links;
        self.branch = Some(ep);
        self.integrity("subcog_merge");
        self.compare_rows();
        self.check();
        true
    }

    /// `subcog_merge_conflicts(branch, into)`: the plan's conflicts, with the rows of
    /// the fork, the target and the branch.
    fn check_conflicts(&self, ep: &Episode, plan: &Plan, branch: &str, into: &str, ctx: &str) {
        let mut st = self
            .w
            .prepare("SELECT id, base, ours, theirs FROM subcog_merge_conflicts(?1, ?2)")
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let got: Vec<(i64, Json, Json, Json)> = st
            .query_map([branch, into], |r| {
                Ok((
                    r.get(0)?,
                    json_col(r.get(1)?),
                    json_col(r.get(2)?),
                    json_col(r.get(3)?),
                ))
            })
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("{ctx}: subcog_merge_conflicts: {e}"));
        let ids: Vec<i64> = got.iter().map(|c| c.0).collect();
        assert_eq!(ids, plan.conflicts, "{ctx}: subcog_merge_conflicts");
        for (id, base, ours, theirs) in &got {
            let (b, o, t) = (
                ep.fork.rows.get(id),
                self.o[ep.base_oracle].rows.get(id),
                self.o[ep.oracle].rows.get(id),
            );
            assert!(
                row_is(base, b) && row_is(ours, o) && row_is(theirs, t),
                "{ctx}: conflict {id}: {base} / {ours} / {theirs}, the oracle has {b:?} / {o:?} / {t:?}"
            );
        }
    }

    /// The merge of branch `bt` into `t` (forked at `version`) as the oracle sees it.
    fn plan(&self, ep: &Episode, bt: usize, t: usize, version: i64) -> Plan {
        let (branch, into) = (&self.tabs[bt].name, &self.tabs[t].name);
        let ctx = format!("op {}: merge of {branch} into {into}", self.ops);
        let times = |sql: String, p: &[&dyn rusqlite::ToSql]| self.times(&sql, p, &ctx);
        let tf = times(
            format!("SELECT id, created_at, updated_at FROM {into} WHERE as_of = ?1"),
            &[&version],
        );
        let to = times(
            format!("SELECT id, created_at, updated_at FROM {into}"),
            &[],
        );
        let tb = times(
            format!("SELECT id, created_at, updated_at FROM {branch}"),
            &[],
        );
        let (fork, ours, theirs) = (&ep.fork, &self.o[ep.base_oracle], &self.o[ep.oracle]);
        let mut plan = Plan {
            steps: Vec::new(),
            conflicts: Vec::new(),
            renumbered: BTreeMap::new(),
            links: Vec::new(),
        };
        let mut new = Vec::new();
        let ids: BTreeSet<i64> = fork
            .rows
            .keys()
            .chain(theirs.rows.keys())
            .copied()
            .collect();
        for id in ids {
            let b = ident(&fork.rows, &tf, id, &format!("{ctx} (as of {version})"));
            let th = ident(&theirs.rows, &tb, id, &format!("{ctx} ({branch})"));
            if th == b {
                continue;
            }
            let o = ident(&ours.rows, &to, id, &format!("{ctx} ({into})"));
            if o == th {
                continue;
            }
            match (&b, &th, &o) {
                (None, None, _) => {}
                (None, Some(_), Some(_)) => new.push(id),
                (None, Some(_), None) => plan.steps.push((id, id)),
                _ if o != b => plan.conflicts.push(id),
                _ => plan.steps.push((id, id)),
            }
        }
        // The next ids free in the target and not written by this merge.
        let taken = plan
            .steps
            .iter()
            .map(|s| s.0)
            .chain(plan.conflicts.iter().copied());
        let mut next = taken.max().unwrap_or(0).max(ours.max_id()) + 1;
        for id in new {
            while ours.rows.contains_key(&next) {
                next += 1;
            }
            plan.renumbered.insert(id, next);
            plan.steps.push((next, id));
            next += 1;
        }
        let renumbered = plan.renumbered.clone();
        let map = |x: i64| renumbered.get(&x).copied().unwrap_or(x);
        for &(d, s) in fork.links.symmetric_difference(&theirs.links) {
            let (md, ms) = (map(d), map(s));
            let th = theirs.links.contains(&(d, s));
            let b = fork.links.contains(&(md, ms));
            if th == b {
                continue;
            }
            let o = ours.links.contains(&(md, ms));
            if o != th {
                plan.links.push((ms, md, th, o != b));
            }
        }
        plan
    }

    /// Applies `plan` under `policy` to the base's oracle; returns the memories and
    /// links written.
    fn apply(&mut self, ep: &Episode, plan: &Plan, policy: &str) -> (usize, usize) {
        let mut steps = plan.steps.clone();
        if policy == "theirs" {
            steps.extend(plan.conflicts.iter().map(|&c| (c, c)));
        }
        let (oi, w) = (ep.base_oracle, &self.w);
        let mut applied = 0;
        for (id, bid) in steps {
            let theirs = self.o[ep.oracle].rows.get(&bid).cloned();
            let o = &mut self.o[oi];
            match (o.rows.contains_key(&id), theirs) {
                (false, None) => continue,
                (true, None) => o.delete(w, id),
                (false, Some(r)) => o.insert(w, id, ORow { sup: None, ..r }),
                (true, Some(r)) => o.update(w, id, |x| *x = ORow { sup: x.sup, ..r }),
            }
            applied += 1;
        }
        let mut links = 0;
        for &(s, d, add, contested) in &plan.links {
            let o = &mut self.o[oi];
            if contested && policy != "theirs" {
                continue;
            }
            if add {
                if o.rows.contains_key(&s) && o.rows.contains_key(&d) {
                    o.supersede(w, d, s);
                    links += 1;
                }
            } else if o.links.contains(&(d, s)) {
                o.unlink(w, d, s);
                links += 1;
            }
        }
        (applied, links)
    }

    /// `subcog_diff` of a live branch from its fork, or of a base table between two
    /// snapshots or from a snapshot to now, against the oracle's copies of both versions.
    pub(super) fn diff_check(&mut self) {
        let of_branch = self.branch.is_some() && self.rng.chance(0.5);
        let pick = self.rng.below(2);
        let (table, from, to, a, b) = match &self.branch {
            Some(ep) if of_branch => {
                let (bt, _, version) = ep.tables[pick.min(ep.tables.len() - 1)];
                (
                    self.tabs[bt].name.clone(),
                    Value::Integer(version),
                    None,
                    ep.fork.rows.clone(),
                    self.o[ep.oracle].rows.clone(),
                )
            }
            _ if !self.snaps.is_empty() => {
                let t = self.rng.below(MEMS.len());
                let oi = MEMS[t].oracle;
                let (from, sa) = &self.snaps[self.rng.below(self.snaps.len())];
                let (to, b) = if self.rng.chance(0.5) {
                    let (to, sb) = &self.snaps[self.rng.below(self.snaps.len())];
                    (Some(Value::Text(to.clone())), sb[oi].rows.clone())
                } else {
                    (None, self.o[oi].rows.clone())
                };
                (
                    MEMS[t].name.to_string(),
                    Value::Text(from.clone()),
                    to,
                    sa[oi].rows.clone(),
                    b,
                )
            }
            _ => return,
        };
        self.branch_stats.diffs += 1;
        let ctx = format!("op {}: subcog_diff('{table}', {from:?}, {to:?})", self.ops);
        let sql = if to.is_some() {
            "SELECT id, change, before, after FROM subcog_diff(?1, ?2, ?3)"
        } else {
            "SELECT id, change, before, after FROM subcog_diff(?1, ?2)"
        };
        let mut st = self.w.prepare(sql).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let rows = match &to {
            Some(to) => st.query_map(params![table, from, to], diff_row),
            None => st.query_map(params![table, from], diff_row),
        };
        let got: BTreeMap<i64, (String, Json, Json)> = rows
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let ids: BTreeSet<i64> = a.keys().chain(b.keys()).copied().collect();
        for (id, (change, before, after)) in &got {
            let (x, y) = (a.get(id), b.get(id));
            let want = match (x, y) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(_), Some(_)) => "changed",
                (None, None) => panic!("{ctx}: memory {id} is in neither version: {change}"),
            };
            assert_eq!(change, want, "{ctx}: memory {id}");
            assert!(
                row_is(before, x) && row_is(after, y),
                "{ctx}: memory {id}: {before} -> {after}, the oracle has {x:?} -> {y:?}"
            );
            // Listed with the same columns: its times changed (written, or written back).
            if let (Some(x), Some(y)) = (x, y)
                && same_columns(x, y)
            {
                assert_ne!(before, after, "{ctx}: memory {id} listed unchanged");
            }
        }
        for id in ids {
            if got.contains_key(&id) {
                continue;
            }
            match (a.get(&id), b.get(&id)) {
                (Some(x), Some(y)) if same_columns(x, y) => {}
                (x, y) => panic!("{ctx}: memory {id} not listed, the oracle has {x:?} -> {y:?}"),
            }
        }
    }
}

/// `(id, (change, before, after))` of a `subcog_diff` row.
fn diff_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, (String, Json, Json))> {
    Ok((
        r.get(0)?,
        (r.get(1)?, json_col(r.get(2)?), json_col(r.get(3)?)),
    ))
}
