//! Differential test: long random sequences of INSERT / UPDATE / DELETE / BEGIN / COMMIT /
//! ROLLBACK / SAVEPOINT / ROLLBACK TO / RELEASE / 'optimize' / purge / reopen, applied to two
//! `memories` tables (one always exact, one always HNSW: `exact_max=0`) and to an oracle,
//! an ordinary table in the same database (so every transaction covers all three alike).
//! After many steps every search is compared with the oracle's brute force:
//!
//! * KNN on the exact table: the same ids and distances as brute force;
//! * KNN on the HNSW table: no row that the oracle lacks, every distance equal to the true
//!   distance of the row's current vector (a stale vector would show), recall@k >= 0.99;
//! * keyword search on both: exactly the oracle's rows containing the word;
//! * `vec_search`: identical to the table's KNN;
//! * expired memories (a sixth of inserts, and UPDATEs of `expires_at`) come back from no
//!   search, and `subcog_purge` deletes exactly the oracle's expired rows;
//! * a second connection sees what the oracle shows it: committed state only.
//!
//! Seeded and reproducible. `SUBCOG_DIFF_OPS` (default 1500) operations per seed,
//! `SUBCOG_DIFF_SEEDS` (default `1,2,3,4`; odd seeds run in WAL mode, even in rollback-journal
//! mode). `make stress` runs a longer sequence.

use rusqlite::{Connection, ErrorCode, params};

const DIM: usize = 8;
const WORDS: &[&str] = &[
    "apple", "banana", "cherry", "delta", "echo", "falcon", "garden", "harbor", "island", "jungle",
    "kettle", "lemon", "mango", "nectar", "orbit", "pepper",
];
const NAMESPACES: &[&str] = &["a", "b", "c"];
const TABLES: &[&str] = &["m_exact", "m_ann"];

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    fn vector(&mut self) -> Vec<f32> {
        // Integers in -8..8 give exact ties sometimes: ties must break by id.
        loop {
            let v: Vec<f32> = (0..DIM).map(|_| self.below(17) as f32 - 8.0).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }
    fn content(&mut self) -> String {
        let n = 1 + self.below(5);
        (0..n)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn unblob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The same formula as `Metric::Cosine` (f32, same summation order).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let d = (na * nb).sqrt();
    if d == 0.0 { 1.0 } else { 1.0 - dot / d }
}

fn open(path: &str) -> Connection {
    let c = Connection::open(path).unwrap_or_else(|e| panic!("open: {e}"));
    subcog::register(&c).unwrap_or_else(|e| panic!("register: {e}"));
    c.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    c
}

struct World {
    path: String,
    w: Connection,
    r: Connection,
    rng: Rng,
    in_tx: bool,
    savepoints: Vec<String>,
    next_id: i64,
    sp_counter: usize,
    ann_hits: usize,
    ann_wanted: usize,
    checks: usize,
    ops: usize,
}

impl World {
    fn exec(&self, sql: &str) {
        if std::env::var_os("SUBCOG_DIFF_TRACE").is_some() {
            eprintln!("[{}] {sql}", self.ops);
        }
        self.w
            .execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn trace(&self, msg: &str) {
        if std::env::var_os("SUBCOG_DIFF_TRACE").is_some() {
            eprintln!("[{}] {msg}", self.ops);
        }
    }

    fn ids(&self) -> Vec<i64> {
        let mut st = self
            .w
            .prepare_cached("SELECT id FROM oracle ORDER BY id")
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map([], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|r| r.unwrap_or(0))
            .collect()
    }

    fn step(&mut self) {
        self.ops += 1;
        let roll = self.rng.below(100);
        match roll {
            0..=29 => {
                self.next_id += 1 + self.rng.below(3) as i64;
                let id = self.next_id;
                let (content, ns, v) = (
                    self.rng.content(),
                    NAMESPACES[self.rng.below(3)],
                    self.rng.vector(),
                );
                // One memory in six is born expired (TTL long past): searches must skip it.
                let expires: Option<i64> = self.rng.chance(1.0 / 6.0).then_some(EXPIRED);
                self.trace(&format!("insert {id} ns={ns} expires={expires:?}"));
                self.w
                    .execute(
                        "INSERT INTO oracle(id, content, namespace, emb, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, content, ns, blob(&v), expires],
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                for t in TABLES {
                    self.w
                        .execute(&format!("INSERT INTO {t}(id, content, namespace, embedding, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)"), params![id, content, ns, blob(&v), expires])
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            30..=44 => {
                let ids = self.ids();
                if ids.is_empty() {
                    return;
                }
                let id = ids[self.rng.below(ids.len())];
                let (col, val): (&str, rusqlite::types::Value) = match self.rng.below(4) {
                    0 => ("content", self.rng.content().into()),
                    3 => (
                        "expires_at",
                        if self.rng.chance(0.5) {
                            EXPIRED.into()
                        } else {
                            rusqlite::types::Value::Null
                        },
                    ),
                    1 => (
                        "namespace",
                        NAMESPACES[self.rng.below(3)].to_string().into(),
                    ),
                    _ => ("embedding", blob(&self.rng.vector()).into()),
                };
                let ocol = if col == "embedding" { "emb" } else { col };
                self.trace(&format!("update {id} {col}"));
                self.w
                    .execute(
                        &format!("UPDATE oracle SET {ocol} = ?1 WHERE id = ?2"),
                        params![val, id],
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                for t in TABLES {
                    self.w
                        .execute(
                            &format!("UPDATE {t} SET {col} = ?1 WHERE id = ?2"),
                            params![val, id],
                        )
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            45..=54 => {
                let ids = self.ids();
                if ids.is_empty() {
                    return;
                }
                let id = ids[self.rng.below(ids.len())];
                self.trace(&format!("delete {id}"));
                for t in ["oracle", "m_exact", "m_ann"] {
                    self.w
                        .execute(&format!("DELETE FROM {t} WHERE id = ?1"), [id])
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            55..=61 => {
                if self.in_tx || !self.savepoints.is_empty() {
                    if self.rng.chance(0.6) {
                        self.exec("COMMIT");
                    } else {
                        self.exec("ROLLBACK");
                    }
                    self.in_tx = false;
                    self.savepoints.clear();
                } else {
                    self.exec("BEGIN");
                    self.in_tx = true;
                }
            }
            62..=66 => {
                self.sp_counter += 1;
                let name = format!("sp{}", self.sp_counter);
                self.exec(&format!("SAVEPOINT {name}"));
                self.savepoints.push(name);
            }
            67..=71 => {
                if !self.savepoints.is_empty() {
                    let i = self.rng.below(self.savepoints.len());
                    let name = self.savepoints[i].clone();
                    self.exec(&format!("ROLLBACK TO {name}"));
                    self.savepoints.truncate(i + 1);
                }
            }
            72..=75 => {
                if !self.savepoints.is_empty() {
                    let i = self.rng.below(self.savepoints.len());
                    let name = self.savepoints[i].clone();
                    // Releasing the outermost savepoint outside BEGIN commits.
                    self.exec(&format!("RELEASE {name}"));
                    self.savepoints.truncate(i);
                }
            }
            76..=77 => self.exec("INSERT INTO m_ann(m_ann) VALUES ('optimize')"),
            78 => {
                self.trace("purge");
                let purged = |t: &str| -> i64 {
                    self.w
                        .query_row(&format!("SELECT subcog_purge('{t}')"), [], |r| r.get(0))
                        .unwrap_or_else(|e| panic!("purge {t}: {e}"))
                };
                let n = self
                    .w
                    .execute("DELETE FROM oracle WHERE expires_at IS NOT NULL", [])
                    .unwrap_or_else(|e| panic!("{e}")) as i64;
                for t in TABLES {
                    assert_eq!(purged(t), n, "op {}: subcog_purge('{t}')", self.ops);
                }
            }
            79..=80 => {
                if !self.in_tx && self.savepoints.is_empty() {
                    self.trace("reopen");
                    let path = self.path.clone();
                    self.w = open(&path);
                    self.r = open(&path);
                }
            }
            _ => self.check(),
        }
    }

    fn oracle_rows(
        conn: &Connection,
        ns: Option<&str>,
    ) -> rusqlite::Result<Vec<(i64, String, Vec<f32>)>> {
        let mut st = conn.prepare_cached(
            "SELECT id, content, emb FROM oracle WHERE (?1 IS NULL OR namespace = ?1) \
             AND expires_at IS NULL",
        )?;
        let rows = st
            .query_map([ns], |r| {
                Ok((r.get(0)?, r.get(1)?, unblob(&r.get::<_, Vec<u8>>(2)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn knn(
        conn: &Connection,
        table: &str,
        q: &[f32],
        k: usize,
        ns: Option<&str>,
    ) -> rusqlite::Result<Vec<(i64, f32)>> {
        let sql = match ns {
            Some(_) => format!(
                "SELECT id, distance FROM {table} WHERE embedding MATCH ?1 AND k = ?2 AND namespace = ?3"
            ),
            None => format!("SELECT id, distance FROM {table} WHERE embedding MATCH ?1 AND k = ?2"),
        };
        let mut st = conn.prepare_cached(&sql)?;
        let map = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)? as f32));
        match ns {
            Some(n) => st.query_map(params![blob(q), k as i64, n], map)?.collect(),
            None => st.query_map(params![blob(q), k as i64], map)?.collect(),
        }
    }

    /// Compares every search on `conn` with the oracle as `conn` sees it.
    fn compare(&mut self, reader: bool) -> rusqlite::Result<()> {
        let conn = if reader { &self.r } else { &self.w };
        let ctx = format!(
            "op {} ({})",
            self.ops,
            if reader {
                "second connection"
            } else {
                "writer"
            }
        );
        let n_oracle: i64 = conn.query_row("SELECT count(*) FROM oracle", [], |r| r.get(0))?;
        for t in TABLES {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
            assert_eq!(n, n_oracle, "{ctx}: row count of {t}");
        }
        let q = self.rng.vector();
        let k = 1 + self.rng.below(15);
        let ns = if self.rng.chance(0.4) {
            Some(NAMESPACES[self.rng.below(3)])
        } else {
            None
        };
        let rows = Self::oracle_rows(conn, ns)?;
        let mut truth: Vec<(f32, i64)> =
            rows.iter().map(|(id, _, v)| (cosine(&q, v), *id)).collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<(i64, f32)> = truth.iter().take(k).map(|(d, id)| (*id, *d)).collect();
        let exact = Self::knn(conn, "m_exact", &q, k, ns)?;
        assert_eq!(exact, want, "{ctx}: exact KNN k={k} ns={ns:?}");
        let ann = Self::knn(conn, "m_ann", &q, k, ns)?;
        assert_eq!(
            ann.len(),
            want.len(),
            "{ctx}: HNSW KNN returned {} of {}",
            ann.len(),
            want.len()
        );
        for (id, d) in &ann {
            let Some((_, _, v)) = rows.iter().find(|(rid, _, _)| rid == id) else {
                panic!("{ctx}: HNSW KNN returned id {id}, which the oracle does not have");
            };
            assert_eq!(
                *d,
                cosine(&q, v),
                "{ctx}: HNSW distance of id {id} is not its current vector's"
            );
        }
        let cutoff = want.last().map_or(f32::INFINITY, |w| w.1);
        self.ann_hits += ann
            .iter()
            .filter(|(_, d)| *d <= cutoff)
            .count()
            .min(want.len());
        self.ann_wanted += want.len();
        if !reader && ns.is_none() {
            let mut st =
                conn.prepare_cached("SELECT id, distance FROM vec_search('m_ann', ?1, ?2)")?;
            let vs: Vec<(i64, f32)> = st
                .query_map(params![blob(&q), k as i64], |r| {
                    Ok((r.get(0)?, r.get::<_, f64>(1)? as f32))
                })?
                .collect::<rusqlite::Result<_>>()?;
            assert_eq!(vs, ann, "{ctx}: vec_search differs from the table's KNN");
        }
        let word = WORDS[self.rng.below(WORDS.len())];
        let mut want_kw: Vec<i64> = rows
            .iter()
            .filter(|(_, c, _)| c.split(' ').any(|w| w == word))
            .map(|(id, _, _)| *id)
            .collect();
        want_kw.sort_unstable();
        for t in TABLES {
            let sql = match ns {
                Some(_) => format!("SELECT id FROM {t} WHERE content MATCH ?1 AND namespace = ?2"),
                None => format!("SELECT id FROM {t} WHERE content MATCH ?1 AND ?2 IS NULL"),
            };
            let mut got: Vec<i64> = conn
                .prepare_cached(&sql)?
                .query_map(params![word, ns], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            got.sort_unstable();
            assert_eq!(got, want_kw, "{ctx}: keyword '{word}' on {t} ns={ns:?}");
        }
        Ok(())
    }

    fn check(&mut self) {
        self.checks += 1;
        if let Err(e) = self.compare(false) {
            panic!("op {}: writer check failed: {e}", self.ops);
        }
        match self.compare(true) {
            Ok(()) => {}
            // A rollback-journal reader may be locked out while the writer commits.
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == ErrorCode::DatabaseBusy || f.code == ErrorCode::DatabaseLocked => {}
            Err(e) => panic!("op {}: second-connection check failed: {e}", self.ops),
        }
    }
}

/// An `expires_at` long past (1 ms after the Unix epoch).
const EXPIRED: i64 = 1;

fn run(seed: u64, ops: usize) -> (usize, usize, f64) {
    let dir = std::env::temp_dir().join(format!("subcog-diff-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("diff.db").to_string_lossy().to_string();
    let w = open(&path);
    let mode = if seed % 2 == 1 { "WAL" } else { "DELETE" };
    w.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| {
        r.get::<_, String>(0)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    w.execute_batch(&format!(
        "CREATE TABLE oracle(id INTEGER PRIMARY KEY, content TEXT NOT NULL, namespace TEXT NOT NULL, emb BLOB NOT NULL, expires_at INTEGER);
         CREATE VIRTUAL TABLE m_exact USING memories(dim={DIM}, auto_embed=off, exact_max=1000000);
         CREATE VIRTUAL TABLE m_ann USING memories(dim={DIM}, auto_embed=off, exact_max=0, m=8, ef_construction=64, ef_search=32);"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let r = open(&path);
    let mut world = World {
        path: path.clone(),
        w,
        r,
        rng: Rng(seed),
        in_tx: false,
        savepoints: Vec::new(),
        next_id: 0,
        sp_counter: 0,
        ann_hits: 0,
        ann_wanted: 0,
        checks: 0,
        ops: 0,
    };
    for _ in 0..ops {
        world.step();
    }
    if world.in_tx || !world.savepoints.is_empty() {
        world.exec("COMMIT");
        world.in_tx = false;
        world.savepoints.clear();
    }
    world.check();
    for t in TABLES {
        let report: String = world
            .w
            .query_row("SELECT subcog_integrity(?1)", [t], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.contains("\"ok\":true"), "{t}: {report}");
    }
    let recall = world.ann_hits as f64 / world.ann_wanted.max(1) as f64;
    let checks = world.checks;
    drop(world);
    let _ = std::fs::remove_dir_all(&dir);
    (ops, checks, recall)
}

#[test]
fn random_operations_agree_with_the_oracle() {
    let ops: usize = std::env::var("SUBCOG_DIFF_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seeds: Vec<u64> = std::env::var("SUBCOG_DIFF_SEEDS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3, 4]);
    let mut total = 0;
    for seed in &seeds {
        let (n, checks, recall) = run(*seed, ops);
        total += n;
        eprintln!(
            "seed {seed}: {n} operations, {checks} full comparisons, HNSW recall {recall:.4}"
        );
        assert!(recall >= 0.99, "seed {seed}: HNSW recall {recall}");
    }
    eprintln!(
        "differential: {total} operations over {} seeds",
        seeds.len()
    );
}
