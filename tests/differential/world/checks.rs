//! The checks of a [`World`]: random searches of every kind and row-by-row comparisons on
//! both connections against the oracles, and the end of a run.

use std::collections::BTreeMap;

use rusqlite::{Connection, ErrorCode, params};

use super::*;

impl World {
    // ---- checks ------------------------------------------------------------------------

    pub(super) fn probes(&mut self) -> Vec<Probe> {
        (0..self.tabs.len())
            .map(|_| Probe {
                q: self.rng.vector(DIM),
                k: 1 + self.rng.below(15),
                ns: self.rng.chance(0.4).then(|| *self.rng.pick(NAMESPACES)),
                include: self.rng.chance(0.5),
                word: self.rng.pick::<&str>(WORDS),
            })
            .collect()
    }

    pub(super) fn check(&mut self) {
        self.checks += 1;
        let probes = self.probes();
        let views: Vec<&BTreeMap<i64, ORow>> = self.o.iter().map(|o| &o.rows).collect();
        let ctx = format!("op {} (writer)", self.ops);
        let recall = compare(&self.w, &self.tabs, &views, &probes, true, &ctx)
            .unwrap_or_else(|e| panic!("{ctx}: check failed: {e}"));
        for (t, (h, w)) in recall.into_iter().enumerate() {
            self.stats[t].hits += h;
            self.stats[t].wanted += w;
        }
        let probes = self.probes();
        let ctx = format!("op {} (second connection)", self.ops);
        let r = (|| {
            let owned: Vec<BTreeMap<i64, ORow>> = self
                .o
                .iter()
                .map(|o| Oracle::read(&self.r, &o.table))
                .collect::<rusqlite::Result<_>>()?;
            let views: Vec<&BTreeMap<i64, ORow>> = owned.iter().collect();
            compare(&self.r, &self.tabs, &views, &probes, false, &ctx)
        })();
        match r {
            Ok(recall) => {
                for (t, (h, w)) in recall.into_iter().enumerate() {
                    self.stats[t].hits += h;
                    self.stats[t].wanted += w;
                }
            }
            // A rollback-journal reader may be locked out while the writer commits.
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == ErrorCode::DatabaseBusy || f.code == ErrorCode::DatabaseLocked => {}
            Err(e) => panic!("{ctx}: check failed: {e}"),
        }
    }

    /// Every tracked column of every row of every table, as the oracle has it.
    pub(super) fn compare_rows(&self) {
        for m in &self.tabs {
            let ctx = format!("op {}: {} row by row", self.ops, m.name);
            let want = &self.o[m.oracle].rows;
            let got = rows_of(
                &self.w,
                &format!(
                    "SELECT id, content, namespace, tags, embedding, expires_at, superseded_by \
                     FROM {} ORDER BY id",
                    m.name
                ),
                &ctx,
            );
            assert_eq!(got.len(), want.len(), "{ctx}: row count");
            for (id, row) in &got {
                let Some(w) = want.get(id) else {
                    panic!("{ctx}: id {id} is not in the oracle");
                };
                assert_eq!(row, w, "{ctx}: memory {id} (table, then oracle)");
            }
        }
    }

    /// Every row with a vector is found by a KNN of its own vector (k = 1; another row
    /// at distance 0 counts), superseded ones with `include_superseded = 1`.
    pub(super) fn own_vector_check(&mut self, ctx: &str) {
        for (t, m) in self.tabs.iter().enumerate() {
            let rows = &self.o[m.oracle].rows;
            let mut n = 0;
            for (id, r) in rows {
                let Some(v) = &r.v else { continue };
                let got = knn(&self.w, &m.name, v, 1, None, r.sup.is_some())
                    .unwrap_or_else(|e| panic!("{ctx}: {}: KNN of {id}'s vector: {e}", m.name));
                let own = cosine(v, v);
                let found = got.first().is_some_and(|(g, d)| g == id || *d <= own);
                assert!(
                    found,
                    "{ctx}: {}: memory {id} ({r:?}) is not found by a KNN of its own vector: {got:?}",
                    m.name
                );
                n += 1;
            }
            self.stats[t].own_vector += n;
        }
    }

    /// The end of a run: commit, compare everything, make every row unexpired, then the
    /// own-vector check and integrity on the writer and again on new connections.
    pub(super) fn finish(&mut self) {
        if self.tx_open() {
            self.end(true);
        }
        self.check();
        self.compare_rows();
        self.exec("BEGIN");
        for m in MEMS {
            self.exec(&format!(
                "UPDATE {} SET expires_at = NULL WHERE expires_at IS NOT NULL",
                m.name
            ));
        }
        for oi in 0..self.o.len() {
            let ids: Vec<i64> = self.o[oi]
                .rows
                .iter()
                .filter(|(_, r)| r.expired)
                .map(|(i, _)| *i)
                .collect();
            for id in ids {
                self.o[oi].update(&self.w, id, |r| r.expired = false);
            }
        }
        self.exec("COMMIT");
        self.integrity("un-expiring every row");
        self.compare_rows();
        self.own_vector_check("end of run (writer)");
        let path = self.path.clone();
        self.w = open(&path);
        self.r = open(&path);
        self.own_vector_check("end of run (after a reopen)");
        self.integrity("the end of the run (new connection)");
        self.check();
    }
}

/// Compares one random search per table on `conn` with the oracle rows `views` (as
/// `conn` sees them). Returns per table `(hits, wanted)` of the recall@k count.
/// The rows of `sql` (`id, content, namespace, tags, embedding, expires_at,
/// superseded_by`) as the oracle keeps them.
pub(super) fn rows_of(c: &Connection, sql: &str, ctx: &str) -> Vec<(i64, ORow)> {
    let mut st = c
        .prepare_cached(sql)
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    st.query_map([], |r| {
        let tags: String = r.get(3)?;
        Ok((
            r.get(0)?,
            ORow {
                content: r.get(1)?,
                ns: r.get(2)?,
                v: r.get::<_, Option<Vec<u8>>>(4)?.map(|b| unblob(&b)),
                expired: r.get::<_, Option<i64>>(5)?.is_some(),
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                sup: r.get(6)?,
            },
        ))
    })
    .and_then(|rows| rows.collect())
    .unwrap_or_else(|e| panic!("{ctx}: {e}"))
}

fn compare(
    conn: &Connection,
    tabs: &[Tab],
    views: &[&BTreeMap<i64, ORow>],
    probes: &[Probe],
    writer: bool,
    ctx: &str,
) -> rusqlite::Result<Vec<(usize, usize)>> {
    let mut recall = Vec::new();
    for (t, m) in tabs.iter().enumerate() {
        let rows = views[m.oracle];
        let p = &probes[t];
        let name = m.name.as_str();
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {name}"), [], |r| r.get(0))?;
        assert_eq!(n as usize, rows.len(), "{ctx}: row count of {name}");
        let want = brute_knn(rows, &p.q, p.k, p.ns, p.include);
        let got = knn(conn, name, &p.q, p.k, p.ns, p.include)?;
        let what = format!(
            "{ctx}: {name} KNN k={} ns={:?} include_superseded={}",
            p.k, p.ns, p.include
        );
        if m.kind == Kind::Exact {
            assert_eq!(got, want, "{what}");
        } else {
            assert_eq!(
                got.len(),
                want.len(),
                "{what}: {got:?} vs brute force {want:?}"
            );
            for (i, (id, d)) in got.iter().enumerate() {
                let Some(r) = rows.get(id).filter(|r| r.visible(p.include)) else {
                    panic!(
                        "{what}: returned {id}, which is not visible: {:?}",
                        rows.get(id)
                    );
                };
                let v = r.v.as_deref().unwrap_or_default();
                assert_eq!(
                    *d,
                    cosine(&p.q, v),
                    "{what}: distance of {id} is not its vector's"
                );
                assert!(
                    !got[..i].iter().any(|(g, _)| g == id),
                    "{what}: {id} returned twice"
                );
            }
        }
        let cutoff = want.last().map_or(f32::INFINITY, |w| w.1);
        recall.push((
            got.iter()
                .filter(|(_, d)| *d <= cutoff)
                .count()
                .min(want.len()),
            want.len(),
        ));
        if writer && p.ns.is_none() {
            let plain = knn(conn, name, &p.q, p.k, None, false)?;
            let mut st = conn.prepare_cached("SELECT id, distance FROM vec_search(?1, ?2, ?3)")?;
            let vs: Vec<(i64, f32)> = st
                .query_map(params![name, blob(&p.q), p.k as i64], |r| {
                    Ok((r.get(0)?, r.get::<_, f64>(1)? as f32))
                })?
                .collect::<rusqlite::Result<_>>()?;
            assert_eq!(
                vs, plain,
                "{ctx}: vec_search('{name}') differs from its KNN"
            );
        }
        for include in [false, true] {
            let mut want_kw: Vec<i64> = rows
                .iter()
                .filter(|(_, r)| {
                    r.visible(include)
                        && p.ns.is_none_or(|n| r.ns == n)
                        && r.content
                            .split_whitespace()
                            .any(|w| w.eq_ignore_ascii_case(p.word))
                })
                .map(|(id, _)| *id)
                .collect();
            want_kw.sort_unstable();
            let got_kw = keyword(conn, name, p.word, p.ns, include)?;
            assert_eq!(
                got_kw, want_kw,
                "{ctx}: {name} keyword '{}' ns={:?} include_superseded={include}",
                p.word, p.ns
            );
        }
    }
    Ok(recall)
}
