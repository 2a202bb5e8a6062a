//! The auto-embedded run: 384-d default tables (`memories()`, and the same with
//! `exact_max=64`), content from a word list, eager and batched near-duplicate checks,
//! against the oracle.

use rusqlite::{Connection, params};

use super::{THRESHOLD, temp_db, trace_on};
use crate::common::oracle::*;
use crate::common::rng::Rng;
use crate::common::search::*;
use crate::common::*;

/// The auto-embedded tables: the defaults, and the defaults with a small `exact_max` (and
/// no int8 scan, `scan_max=0`) so that the graph is searched. `(table, options, oracle table, exact_max)`.
const A_MEMS: &[(&str, &str, &str, usize)] = &[
    ("a_default", "", "oa_default", 2048),
    ("a_small", "exact_max=64, scan_max=0", "oa_small", 64),
];
const A_NAMESPACES: &[&str] = &["a", "b"];
const SUBJECTS: &[&str] = &["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"];
const VERBS: &[&str] = &["likes", "owns", "repairs", "sells", "paints", "rents"];
const OBJECTS: &[&str] = &[
    "the red car",
    "a small boat",
    "the old house",
    "a blue bicycle",
    "the garden shed",
    "a wooden desk",
];
const WHEN: &[&str] = &[
    "on Monday",
    "on Friday",
    "every week",
    "in the morning",
    "at night",
    "in winter",
];
/// The sized transactions of the auto-embedded run: around `WriteSearched` (128).
const A_SIZES: &[usize] = &[1, 127, 128, 129, 200];
/// Tolerance on 384-d distances (the table may sum in another order).
const TOL: f32 = 1e-5;

struct AWorld {
    path: String,
    w: Connection,
    rng: Rng,
    o: Vec<Oracle>,
    in_tx: bool,
    /// Per table: outcomes `[inserted, duplicate, superseded]` seen.
    outcomes: Vec<[usize; 3]>,
    /// Per table: links found at a sync (batched near-duplicate checks).
    batched_links: Vec<usize>,
    /// Per table: the earlier `(content, namespace)` of each memory updated since the last
    /// sync. Every query flushes (an UPDATE's own row lookup too), so a link found between
    /// two syncs may predate an update of either memory: it is checked against every state
    /// each had since the last sync.
    revised: Vec<std::collections::HashMap<i64, Vec<(String, String)>>>,
    strict: Vec<usize>,
    own_vector: Vec<usize>,
    ops: usize,
    integrity: usize,
}

fn sentence(rng: &mut Rng) -> String {
    if rng.chance(0.25) {
        // Numbers changed: a correction of the same fact.
        let n = rng.pick(&[100, 200, 500, 1000, 2000]);
        let what = rng.pick(&[
            "requests per minute",
            "users per team",
            "megabytes per file",
        ]);
        format!("The API limit is {n} {what}")
    } else {
        format!(
            "{} {} {} {}",
            rng.pick(SUBJECTS),
            rng.pick(VERBS),
            rng.pick(OBJECTS),
            rng.pick(WHEN)
        )
    }
}

impl AWorld {
    fn exec(&self, sql: &str) {
        if trace_on() {
            eprintln!("[auto {}] {sql}", self.ops);
        }
        self.w
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("auto op {}: {sql}: {e}", self.ops));
    }

    fn integrity(&mut self, what: &str) {
        let ctx = format!("auto op {} after {what}", self.ops);
        for (name, ..) in A_MEMS {
            assert_integrity(&self.w, name, &ctx);
        }
        self.integrity += 1;
    }

    /// Reads every row's vector and `superseded_by` (a query: it flushes pending
    /// embeddings and batched near-duplicate checks) into the oracle, validating the
    /// supersessions the oracle did not know: same namespace, newer, similarity >= the
    /// threshold.
    fn sync(&mut self, t: usize) {
        let (name, _, _, _) = A_MEMS[t];
        let ctx = format!("auto op {}: {name} sync", self.ops);
        let rows: Vec<(i64, Option<Vec<u8>>, Option<i64>)> = self
            .w
            .prepare_cached(&format!("SELECT id, embedding, superseded_by FROM {name}"))
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(rows.len(), self.o[t].rows.len(), "{ctx}: row count");
        let mut links = Vec::new();
        for (id, emb, sup) in rows {
            let Some(o) = self.o[t].rows.get(&id).cloned() else {
                panic!("{ctx}: id {id} is not in the oracle");
            };
            let v = emb.map(|b| unblob(&b));
            assert!(
                v.is_some(),
                "{ctx}: memory {id} has no vector after a query"
            );
            match (&o.v, &v) {
                (Some(a), Some(b)) => assert_eq!(a, b, "{ctx}: the vector of {id} changed"),
                _ => {
                    let v = v.clone();
                    self.o[t].update(&self.w, id, |r| r.v = v);
                }
            }
            if sup != o.sup {
                assert!(
                    o.sup.is_none(),
                    "{ctx}: memory {id} superseded by {sup:?}, the oracle says {:?}",
                    o.sup
                );
                links.push((id, sup));
            }
        }
        for (old, sup) in links {
            let Some(new) = sup else { continue };
            let (o, n) = (&self.o[t].rows[&old], self.o[t].rows.get(&new));
            let Some(n) = n else {
                panic!("{ctx}: {old} is superseded by {new}, which does not exist");
            };
            assert!(new > old, "{ctx}: {new} supersedes the newer {old}");
            // Same namespace and similarity >= the threshold, in some state each memory
            // had since the last sync (the current one unless an endpoint was updated).
            let (o_now, n_now) = (o.clone(), n.clone());
            let old_states = self.states(t, old, o_now.v.clone(), &o_now.ns);
            let new_states = self.states(t, new, n_now.v.clone(), &n_now.ns);
            let best = old_states
                .iter()
                .flat_map(|(ov, ons)| {
                    new_states
                        .iter()
                        .filter(move |(_, nns)| nns == ons)
                        .map(move |(nv, _)| similarity(ov, nv))
                })
                .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
            let Some(sim) = best else {
                panic!("{ctx}: {new} supersedes {old} of another namespace");
            };
            assert!(
                sim >= THRESHOLD - f64::from(TOL),
                "{ctx}: {new} supersedes {old} at similarity {sim}"
            );
            self.o[t].update(&self.w, old, |r| r.sup = Some(new));
            self.batched_links[t] += 1;
        }
        self.revised[t].clear();
    }

    /// The `(vector, namespace)` states memory `id` of table `t` had since the last sync:
    /// `now` (its current vector and namespace) and, when it was updated meanwhile, each
    /// earlier content (embedded with `embed()`, as the table embedded it) and namespace.
    fn states(
        &self,
        t: usize,
        id: i64,
        now: Option<Vec<f32>>,
        ns: &str,
    ) -> Vec<(Vec<f32>, String)> {
        let mut out = vec![(now.unwrap_or_default(), ns.to_string())];
        for (content, ns) in self.revised[t].get(&id).into_iter().flatten() {
            let v: Vec<u8> = self
                .w
                .query_row("SELECT embed(?1)", [content], |r| r.get(0))
                .unwrap_or_else(|e| panic!("auto op {}: embed: {e}", self.ops));
            out.push((unblob(&v), ns.clone()));
        }
        out
    }

    /// Notes memory `id`'s content and namespace before an update (see `revised`).
    fn revise(&mut self, t: usize, id: i64) {
        if let Some(r) = self.o[t].rows.get(&id) {
            let was = (r.content.clone(), r.ns.clone());
            self.revised[t].entry(id).or_default().push(was);
        }
    }

    fn insert(&mut self, eager: bool) {
        self.ops += 1;
        for t in 0..A_MEMS.len() {
            let (name, _, _, exact_max) = A_MEMS[t];
            let mut content = sentence(&mut self.rng);
            let mut ns = self.rng.pick(A_NAMESPACES).to_string();
            if self.rng.chance(0.15)
                && let Some(src) = self.o[t].random_id(&mut self.rng)
            {
                let s = self.o[t].rows[&src].clone();
                content = s
                    .content
                    .split(' ')
                    .map(|w| {
                        if self.rng.chance(0.3) {
                            w.to_uppercase()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(if self.rng.chance(0.3) { "  " } else { " " });
                ns = s.ns;
            }
            let expired = self.rng.chance(0.1);
            let exact = self.o[t].count_ns(&ns) <= exact_max;
            let dups_before = self.o[t].live_duplicates(&ns, &content);
            self.w
                .execute(
                    &format!(
                        "INSERT INTO {name}(content, namespace, expires_at) VALUES (?1, ?2, ?3)"
                    ),
                    params![content, ns, expired.then_some(EXPIRED)],
                )
                .unwrap_or_else(|e| panic!("auto op {}: insert into {name}: {e}", self.ops));
            let rowid = self.w.last_insert_rowid();
            let ctx = format!("auto op {}: {name} INSERT '{content}' ns={ns}", self.ops);
            let row = ORow {
                content: content.clone(),
                ns: ns.clone(),
                v: None,
                expired,
                tags: Vec::new(),
                sup: None,
            };
            if self.o[t].rows.contains_key(&rowid) {
                // An exact duplicate (checked at once, batched or not): an unexpired memory of
                // the namespace with the same normalised content.
                let o = &self.o[t].rows[&rowid];
                assert!(
                    o.ns == ns && !o.expired && normalise(&o.content) == normalise(&content),
                    "{ctx}: landed on {rowid}, which is no duplicate: {o:?}"
                );
                if !eager {
                    self.outcomes[t][1] += 1;
                    continue;
                }
            } else {
                assert_eq!(rowid, self.o[t].max_id() + 1, "{ctx}: new id");
                if eager {
                    assert!(
                        dups_before.is_empty(),
                        "{ctx}: a new memory, but {dups_before:?} have the same content"
                    );
                }
                self.o[t].insert(&self.w, rowid, row);
                if !eager {
                    continue;
                }
            }
            // Eager: the outcome now (subcog_last_insert flushes first), validated against
            // the oracle, whose vectors are all known (synced before the transaction).
            let out = last_insert(&self.w, name)
                .unwrap_or_else(|| panic!("{ctx}: subcog_last_insert is NULL"));
            assert_eq!(out["id"].as_i64(), Some(rowid), "{ctx}: {out}");
            let outcome = out["outcome"].as_str().unwrap_or("");
            if outcome == "duplicate" {
                assert!(dups_before.contains(&rowid), "{ctx}: {out}");
                self.outcomes[t][1] += 1;
                continue;
            }
            let v: Vec<f32> = self
                .w
                .query_row(
                    &format!("SELECT embedding FROM {name} WHERE id = ?1"),
                    [rowid],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .map(|b| unblob(&b))
                .unwrap_or_else(|e| panic!("{ctx}: embedding of {rowid}: {e}"));
            // The nearest live memory other than the new one.
            let best = {
                let o = &mut self.o[t];
                let saved = o.rows.get(&rowid).cloned();
                o.rows.remove(&rowid);
                let best = o.nearest_live(&ns, &v);
                if let Some(s) = saved {
                    o.rows.insert(rowid, s);
                }
                best
            };
            self.o[t].update(&self.w, rowid, |r| r.v = Some(v.clone()));
            match outcome {
                "superseded" => {
                    let old = out["supersedes"].as_i64().unwrap_or(0);
                    let o = self.o[t].rows.get(&old).cloned();
                    let Some(o) = o.filter(|o| o.live() && o.ns == ns) else {
                        panic!("{ctx}: {out}: {old} is not a live memory of the namespace");
                    };
                    let sim = similarity(&v, o.v.as_deref().unwrap_or_default());
                    assert!(
                        sim >= THRESHOLD - f64::from(TOL),
                        "{ctx}: {out}: similarity {sim}"
                    );
                    if exact && let Some((b, d)) = best {
                        assert!(
                            cosine(&v, o.v.as_deref().unwrap_or_default()) <= d + TOL,
                            "{ctx}: {out}, but {b} is nearer (distance {d})"
                        );
                        self.strict[t] += 1;
                    }
                    self.o[t].update(&self.w, old, |r| r.sup = Some(rowid));
                    self.outcomes[t][2] += 1;
                }
                "inserted" => {
                    if exact {
                        if let Some((b, d)) = best {
                            assert!(
                                1.0 - f64::from(d) < THRESHOLD + f64::from(TOL),
                                "{ctx}: {out}, but live memory {b} is at similarity {}",
                                1.0 - d
                            );
                        }
                        self.strict[t] += 1;
                    }
                    self.outcomes[t][0] += 1;
                }
                _ => panic!("{ctx}: unexpected outcome {out}"),
            }
        }
    }

    fn update(&mut self) {
        self.ops += 1;
        for t in 0..A_MEMS.len() {
            let name = A_MEMS[t].0;
            let Some(id) = self.o[t].random_id(&mut self.rng) else {
                continue;
            };
            match self.rng.below(3) {
                0 => {
                    // Re-embedded (deferred) from the new content.
                    let c = sentence(&mut self.rng);
                    self.revise(t, id);
                    self.exec_p(
                        &format!("UPDATE {name} SET content = ?1 WHERE id = ?2"),
                        &c,
                        id,
                    );
                    self.o[t].update(&self.w, id, |r| {
                        r.content = c;
                        r.v = None;
                    });
                }
                1 => {
                    let ns = self.rng.pick(A_NAMESPACES).to_string();
                    self.revise(t, id);
                    self.exec_p(
                        &format!("UPDATE {name} SET namespace = ?1 WHERE id = ?2"),
                        &ns,
                        id,
                    );
                    self.o[t].update(&self.w, id, |r| r.ns = ns);
                }
                _ => {
                    let expired = self.rng.chance(0.5);
                    self.w
                        .execute(
                            &format!("UPDATE {name} SET expires_at = ?1 WHERE id = ?2"),
                            params![expired.then_some(EXPIRED), id],
                        )
                        .unwrap_or_else(|e| panic!("auto op {}: {e}", self.ops));
                    self.o[t].update(&self.w, id, |r| r.expired = expired);
                }
            }
        }
    }

    fn exec_p(&self, sql: &str, v: &str, id: i64) {
        self.w
            .execute(sql, params![v, id])
            .unwrap_or_else(|e| panic!("auto op {}: {sql}: {e}", self.ops));
    }

    fn delete(&mut self) {
        self.ops += 1;
        for t in 0..A_MEMS.len() {
            let name = A_MEMS[t].0;
            if let Some(id) = self.o[t].random_id(&mut self.rng) {
                self.w
                    .execute(&format!("DELETE FROM {name} WHERE id = ?1"), [id])
                    .unwrap_or_else(|e| panic!("auto op {}: {e}", self.ops));
                self.o[t].delete(&self.w, id);
            }
        }
    }

    /// Searches of every kind against the oracle (after a sync).
    fn check(&mut self) {
        for t in 0..A_MEMS.len() {
            self.sync(t);
            let (name, _, _, exact_max) = A_MEMS[t];
            let rows = &self.o[t].rows;
            let Some(qid) = self.o[t].random_id(&mut self.rng) else {
                continue;
            };
            let q = rows[&qid].v.clone().unwrap_or_default();
            let k = 1 + self.rng.below(12);
            let ns = self.rng.chance(0.4).then(|| *self.rng.pick(A_NAMESPACES));
            let include = self.rng.chance(0.5);
            let ctx = format!(
                "auto op {}: {name} KNN k={k} ns={ns:?} include_superseded={include}",
                self.ops
            );
            let want = brute_knn(rows, &q, k, ns, include);
            let got =
                knn(&self.w, name, &q, k, ns, include).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(got.len(), want.len(), "{ctx}: {got:?} vs {want:?}");
            for (i, (id, d)) in got.iter().enumerate() {
                let Some(r) = rows.get(id).filter(|r| r.visible(include)) else {
                    panic!(
                        "{ctx}: returned {id}, which is not visible: {:?}",
                        rows.get(id)
                    );
                };
                let truth = cosine(&q, r.v.as_deref().unwrap_or_default());
                assert!(
                    (d - truth).abs() <= TOL,
                    "{ctx}: distance of {id}: {d} vs {truth}"
                );
                if rows.len() <= exact_max {
                    // An exact scan: the brute force's distances, position by position.
                    assert!((d - want[i].1).abs() <= TOL, "{ctx}: {got:?} vs {want:?}");
                }
            }
            let word = *self
                .rng
                .pick(&["alice", "boat", "friday", "limit", "winter"]);
            let mut want_kw: Vec<i64> = rows
                .iter()
                .filter(|(_, r)| {
                    r.visible(include)
                        && ns.is_none_or(|n| r.ns == n)
                        && r.content
                            .split_whitespace()
                            .any(|w| w.eq_ignore_ascii_case(word))
                })
                .map(|(id, _)| *id)
                .collect();
            want_kw.sort_unstable();
            // Quoted, the OR-of-words form: ranked term at a time (`subcog_postings`);
            // bare, streamed through `subcog_bm25`. Both must find every visible match.
            let query = if self.rng.chance(0.5) {
                format!("\"{word}\"")
            } else {
                word.to_string()
            };
            let got_kw = keyword(&self.w, name, &query, ns, include)
                .unwrap_or_else(|e| panic!("{ctx}: keyword: {e}"));
            assert_eq!(got_kw, want_kw, "{ctx}: keyword '{word}'");
            // Hybrid: every row visible, as many as there are (up to k).
            let text = sentence(&mut self.rng);
            let mut sql = format!("SELECT id FROM {name} WHERE {name} MATCH ?1 AND k = ?2");
            if include {
                sql.push_str(" AND include_superseded = 1");
            }
            let hybrid: Vec<i64> = self
                .w
                .prepare_cached(&sql)
                .and_then(|mut st| {
                    st.query_map(params![text, k as i64], |r| r.get(0))?
                        .collect()
                })
                .unwrap_or_else(|e| panic!("{ctx}: hybrid: {e}"));
            let rows = &self.o[t].rows;
            let visible = rows.values().filter(|r| r.visible(include)).count();
            assert_eq!(
                hybrid.len(),
                k.min(visible),
                "{ctx}: hybrid '{text}': {hybrid:?}"
            );
            for id in &hybrid {
                assert!(
                    rows.get(id).is_some_and(|r| r.visible(include)),
                    "{ctx}: hybrid '{text}' returned {id}: {:?}",
                    rows.get(id)
                );
            }
        }
    }

    fn end(&mut self, commit: bool) {
        self.ops += 1;
        self.exec(if commit { "COMMIT" } else { "ROLLBACK" });
        self.in_tx = false;
        if !commit {
            for o in &mut self.o {
                o.reload(&self.w);
            }
            // The rolled back updates left nothing a later link could predate.
            self.revised.iter_mut().for_each(|r| r.clear());
        }
        self.integrity(if commit { "COMMIT" } else { "ROLLBACK" });
        for t in 0..A_MEMS.len() {
            self.sync(t);
        }
    }

    fn transaction(&mut self, n: usize) {
        let eager = self.rng.chance(0.5);
        if eager {
            for t in 0..A_MEMS.len() {
                self.sync(t);
            }
        }
        if n >= 100 && self.rng.chance(0.5) {
            for (name, ..) in A_MEMS {
                self.exec(&format!("INSERT INTO {name}({name}) VALUES ('optimize')"));
            }
        }
        self.exec("BEGIN");
        self.in_tx = true;
        let mut inserts = 0;
        while inserts < n {
            let r = self.rng.unit();
            if r < 0.05 {
                self.update();
                if eager {
                    for t in 0..A_MEMS.len() {
                        self.sync(t);
                    }
                }
            } else if r < 0.10 {
                self.delete();
            } else if r < 0.12 {
                self.check();
            } else {
                self.insert(eager);
                inserts += 1;
            }
        }
        let commit = self.rng.chance(0.75);
        self.end(commit);
    }

    fn own_vector_check(&mut self, ctx: &str) {
        for t in 0..A_MEMS.len() {
            self.sync(t);
            let name = A_MEMS[t].0;
            for (id, r) in &self.o[t].rows {
                // Expired memories never come back from a search (by design).
                let Some(v) = r.v.as_ref().filter(|_| !r.expired) else {
                    continue;
                };
                let got = knn(&self.w, name, v, 1, None, r.sup.is_some())
                    .unwrap_or_else(|e| panic!("{ctx}: {name}: KNN of {id}'s vector: {e}"));
                let found = got
                    .first()
                    .is_some_and(|(g, d)| g == id || *d <= cosine(v, v) + TOL);
                assert!(
                    found,
                    "{ctx}: {name}: memory {id} is not found by a KNN of its own vector: {got:?}"
                );
                self.own_vector[t] += 1;
            }
        }
    }
}

/// One seeded run of the auto-embedded tables, to its end-of-run checks.
pub fn run(seed: u64) {
    let started = std::time::Instant::now();
    let (dir, path) = temp_db("diff-auto", seed);
    let w = open(&path);
    let mut o = Vec::new();
    for (name, options, oracle, _) in A_MEMS {
        w.execute_batch(&format!(
            "CREATE VIRTUAL TABLE {name} USING memories({options})"
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        o.push(Oracle::create(&w, oracle));
    }
    let mut a = AWorld {
        path,
        w,
        rng: Rng(seed ^ 0xa5a5),
        o,
        in_tx: false,
        outcomes: vec![[0; 3]; A_MEMS.len()],
        batched_links: vec![0; A_MEMS.len()],
        revised: vec![Default::default(); A_MEMS.len()],
        strict: vec![0; A_MEMS.len()],
        own_vector: vec![0; A_MEMS.len()],
        ops: 0,
        integrity: 0,
    };
    let mut sizes: Vec<usize> = A_SIZES.to_vec();
    for i in (1..sizes.len()).rev() {
        let j = a.rng.below(i + 1);
        sizes.swap(i, j);
    }
    for n in sizes {
        for _ in 0..4 {
            let small = 2 + a.rng.below(20);
            a.transaction(small);
        }
        a.transaction(n);
        a.check();
    }
    if a.in_tx {
        a.end(true);
    }
    a.own_vector_check("end of run (writer)");
    let path = a.path.clone();
    a.w = open(&path);
    a.own_vector_check("end of run (after a reopen)");
    a.integrity("the end of the run (new connection)");
    eprintln!(
        "auto-embed seed {seed}: {} operations, {} integrity checks, {:.1} s",
        a.ops,
        a.integrity,
        started.elapsed().as_secs_f64()
    );
    for (t, (name, ..)) in A_MEMS.iter().enumerate() {
        let [ins, dup, sup] = a.outcomes[t];
        eprintln!(
            "  {name:<10} rows {:>5}  eager: inserted {ins} duplicate {dup} superseded {sup} \
             (strict {})  batched supersessions {}  own-vector KNN {}",
            a.o[t].rows.len(),
            a.strict[t],
            a.batched_links[t],
            a.own_vector[t]
        );
    }
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}
