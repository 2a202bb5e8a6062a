//! Exact scans of small tables (default options; explicit ids, so no row is merged): the screened scan returns what brute force in f64 returns
//! (ids, order, distances), and the contiguous vector blocks kept between queries never
//! serve a stale vector: after this connection's INSERT, UPDATE and DELETE, another
//! connection's commit, a ROLLBACK TO inside a transaction, a failed statement, and on a
//! second table and an attached database.

mod common;

use common::oracle::cosine;
use common::rng::Rng;
use common::search::knn;
use common::{blob, open, temp_dir, unblob};
use rusqlite::{Connection, params};

const DIM: usize = 8;

/// `(id, distance)` of the exact top k over `items` by the oracle's f64 cosine, ties by id.
fn brute(items: &[(i64, Vec<f32>)], q: &[f32], k: usize) -> Vec<(i64, f32)> {
    let mut d: Vec<(i64, f32)> = items.iter().map(|(id, v)| (*id, cosine(q, v))).collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.truncate(k);
    d
}

/// Runs the KNN `passes` times (the first may read the block, later ones are served from
/// it) and checks each against [`brute`] over `items`, the rows the search may return.
#[allow(clippy::too_many_arguments)]
fn assert_scans(
    c: &Connection,
    items: &[(i64, Vec<f32>)],
    q: &[f32],
    k: usize,
    ns: Option<&str>,
    include_superseded: bool,
    passes: usize,
    what: &str,
) {
    let want = brute(items, q, k);
    for pass in 0..passes {
        let got = knn(c, "m", q, k, ns, include_superseded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "{what}, k {k}, pass {pass}");
    }
}

fn top1(c: &Connection, table: &str, q: &[f32]) -> i64 {
    knn(c, table, q, 1, None, false).unwrap_or_else(|e| panic!("{e}"))[0].0
}

fn insert(c: &Connection, table: &str, id: i64, v: &[f32]) {
    c.execute(
        &format!("INSERT INTO {table}(id, content, embedding) VALUES (?1, ?2, ?3)"),
        params![id, format!("memory {id}"), blob(v)],
    )
    .unwrap_or_else(|e| panic!("insert {id}: {e}"));
}

#[test]
fn screened_scan_matches_brute_force_with_ties_and_every_magnitude() {
    let c = common::mem();
    c.execute_batch(&format!("CREATE VIRTUAL TABLE m USING memories(dim={DIM})"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(7);
    let mut items = Vec::new();
    for id in 1..=600i64 {
        // Small integer vectors (exact ties, duplicates) at scales 2^-20 .. 2^40.
        let scale = 2f32.powi(rng.below(7) as i32 * 10 - 20);
        let v: Vec<f32> = rng.vector(DIM).iter().map(|x| x * scale).collect();
        insert(&c, "m", id, &v);
        items.push((id, v));
    }
    for round in 0..60 {
        let q = rng.vector(DIM);
        let k = [1usize, 5, 10, 50][round % 4];
        // pass 1 is served from the block kept by pass 0
        assert_scans(&c, &items, &q, k, None, false, 2, &format!("round {round}"));
    }
}

/// From its second scan on, a kept block is screened through its int8 codes: on a default
/// table whose near duplicates superseded older rows (hidden from searches), every scan,
/// first or later, whole table or namespace, with or without the superseded rows, equals
/// brute force in f64 over the rows it may return (ids, order, distances).
#[test]
fn coded_block_scan_is_exact_and_skips_hidden_rows() {
    let c = common::mem();
    c.execute_batch(&format!("CREATE VIRTUAL TABLE m USING memories(dim={DIM})"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(31);
    // No id given, so the near-duplicate check runs on every INSERT.
    let add = |c: &Connection, n: usize, ns: &str, v: &[f32]| {
        c.execute(
            "INSERT INTO m(content, namespace, embedding) VALUES (?1, ?2, ?3)",
            params![format!("memory {n}"), ns, blob(v)],
        )
        .unwrap_or_else(|e| panic!("insert {n}: {e}"));
    };
    let mut vs: Vec<Vec<f32>> = Vec::new();
    for i in 0..300 {
        let scale = 2f32.powi(rng.below(5) as i32 * 8 - 16);
        let v: Vec<f32> = rng.vector(DIM).iter().map(|x| x * scale).collect();
        add(&c, i, ["a", "b"][i % 2], &v);
        vs.push(v);
    }
    // Near duplicates (cosine about 0.9999) of 40 of them, in the same namespace.
    for i in (0..300).step_by(7).take(40) {
        let v: Vec<f32> = vs[i].iter().map(|x| x * 1.01 + 1e-3 * x.abs()).collect();
        add(&c, 1000 + i, ["a", "b"][i % 2], &v);
    }
    let rows = |hidden: bool, ns: Option<&str>| -> Vec<(i64, Vec<f32>)> {
        let mut st = c
            .prepare(
                "SELECT id, embedding FROM m WHERE (?1 OR superseded_by IS NULL) \
                 AND (?2 IS NULL OR namespace = ?2)",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map(params![hidden, ns], |r| {
            Ok((r.get::<_, i64>(0)?, unblob(&r.get::<_, Vec<u8>>(1)?)))
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<rusqlite::Result<_>>()
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let superseded: i64 = c
        .query_row(
            "SELECT count(*) FROM m WHERE superseded_by IS NOT NULL AND include_superseded = 1",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        superseded >= 30,
        "near duplicates superseded rows: {superseded}"
    );
    for hidden in [false, true] {
        for ns in [None, Some("a"), Some("b")] {
            let items = rows(hidden, ns);
            for round in 0..30 {
                let q = rng.vector(DIM);
                let k = [1usize, 5, 10, 50][round % 4];
                // pass 0 may read the block, pass 1 codes it, pass 2 reuses the codes
                let what = format!("hidden {hidden}, namespace {ns:?}, round {round}");
                assert_scans(&c, &items, &q, k, ns, hidden, 3, &what);
            }
        }
    }
}

#[test]
fn blocks_follow_every_change() {
    let dir = temp_dir("exact-blocks");
    let path = dir.join("m.db");
    let path = path.to_string_lossy().to_string();
    let a = open(&path);
    let b = open(&path);
    a.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; CREATE VIRTUAL TABLE m USING memories(dim={DIM}); \
         CREATE VIRTUAL TABLE n USING memories(dim={DIM})"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let axis =
        |i: usize| -> Vec<f32> { (0..DIM).map(|j| if j == i { 1.0 } else { 0.0 }).collect() };
    for i in 0..DIM {
        insert(&a, "m", i as i64 + 1, &axis(i));
    }
    let q: Vec<f32> = (0..DIM).map(|j| if j == 0 { 1.0 } else { 0.3 }).collect();
    assert_eq!(top1(&a, "m", &q), 1);
    assert_eq!(top1(&a, "m", &q), 1, "served from the block");

    // This connection's INSERT, UPDATE, DELETE.
    insert(&a, "m", 100, &q);
    assert_eq!(top1(&a, "m", &q), 100, "after an INSERT");
    a.execute(
        "UPDATE m SET embedding = ?1 WHERE id = 100",
        [blob(&axis(3))],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 1, "after an UPDATE");
    a.execute("UPDATE m SET embedding = ?1 WHERE id = 5", [blob(&q)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 5);
    a.execute("DELETE FROM m WHERE id = 5", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 1, "after a DELETE");

    // Another connection's commit.
    assert_eq!(top1(&b, "m", &q), 1);
    insert(&a, "m", 200, &q);
    assert_eq!(top1(&b, "m", &q), 200, "b sees a's commit");
    b.execute("DELETE FROM m WHERE id = 200", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 1, "a sees b's commit");

    // ROLLBACK TO and ROLLBACK inside a transaction.
    a.execute_batch("BEGIN; SAVEPOINT s")
        .unwrap_or_else(|e| panic!("{e}"));
    insert(&a, "m", 300, &q);
    assert_eq!(top1(&a, "m", &q), 300, "own uncommitted row");
    a.execute_batch("ROLLBACK TO s")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 1, "after ROLLBACK TO");
    insert(&a, "m", 301, &q);
    assert_eq!(top1(&a, "m", &q), 301);
    a.execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&a, "m", &q), 1, "after ROLLBACK");

    // A multi-row INSERT that fails half-way is undone by SQLite.
    let failed = a.execute_batch(&format!(
        "INSERT INTO m(id, content, embedding) VALUES (400, 'x', X'{}'), (1, 'dup', NULL)",
        blob(&q)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    ));
    assert!(failed.is_err(), "id 1 exists: the statement fails");
    assert_eq!(top1(&a, "m", &q), 1, "after a failed statement");

    // A write to another table of the same connection, and an attached database.
    insert(&a, "n", 1, &q);
    assert_eq!(top1(&a, "n", &q), 1);
    assert_eq!(top1(&a, "m", &q), 1);
    let other = dir.join("o.db");
    a.execute("ATTACH ?1 AS o", [other.to_string_lossy()])
        .unwrap_or_else(|e| panic!("{e}"));
    a.execute_batch(&format!(
        "CREATE VIRTUAL TABLE o.m USING memories(dim={DIM})"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    insert(&a, "o.m", 7, &axis(1));
    assert_eq!(top1(&a, "o.m", &q), 7);
    let c = open(&other.to_string_lossy());
    insert(&c, "m", 8, &q);
    assert_eq!(
        top1(&a, "o.m", &q),
        8,
        "attached database changed by another connection"
    );
}

/// The int8 scan of mid-size tables (past `exact_max`, a snapshot saved): what brute force
/// in f64 returns (ids, order, distances), with exact ties and every magnitude, and it
/// follows writes made after the snapshot (pending rows: INSERT, UPDATE, DELETE),
/// inside a transaction and after its ROLLBACK.
#[test]
fn int8_scan_of_mid_size_tables_is_exact() {
    let c = common::mem();
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE m USING memories(dim={DIM}, exact_max=0)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(11);
    let mut items: Vec<(i64, Vec<f32>)> = Vec::new();
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for id in 1..=800i64 {
        let scale = 2f32.powi(rng.below(7) as i32 * 10 - 20);
        let v: Vec<f32> = rng.vector(DIM).iter().map(|x| x * scale).collect();
        insert(&c, "m", id, &v);
        items.push((id, v));
    }
    c.execute_batch("INSERT INTO m(m) VALUES ('optimize'); COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let check = |items: &[(i64, Vec<f32>)], rounds: usize, what: &str| {
        let mut rng = Rng(5);
        for round in 0..rounds {
            let q = rng.vector(DIM);
            let k = [1usize, 5, 10, 50][round % 4];
            let got = knn(&c, "m", &q, k, None, false).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, brute(items, &q, k), "{what}: round {round}, k {k}");
        }
    };
    // The first whole-table query of a snapshot walks the graph; the int8 block from the
    // second on.
    knn(&c, "m", &items[0].1, 1, None, false).unwrap_or_else(|e| panic!("{e}"));
    check(&items, 40, "snapshot");
    // Writes after the snapshot: pending rows, scanned exactly beside the block.
    for id in [3i64, 50, 700] {
        let v = rng.vector(DIM);
        c.execute(
            "UPDATE m SET embedding = ?1 WHERE id = ?2",
            params![blob(&v), id],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        if let Some(item) = items.iter_mut().find(|(i, _)| *i == id) {
            item.1 = v;
        }
    }
    c.execute("DELETE FROM m WHERE id IN (4, 51)", [])
        .unwrap_or_else(|e| panic!("{e}"));
    items.retain(|(id, _)| *id != 4 && *id != 51);
    for id in 900..910i64 {
        let v = rng.vector(DIM);
        insert(&c, "m", id, &v);
        items.push((id, v));
    }
    check(&items, 40, "after writes");
    // Inside a transaction (the block stays in use), then rolled back.
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    let before = items.clone();
    let v = rng.vector(DIM);
    c.execute(
        "UPDATE m SET embedding = ?1 WHERE id = 7",
        params![blob(&v)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    if let Some(item) = items.iter_mut().find(|(i, _)| *i == 7) {
        item.1 = v;
    }
    check(&items, 20, "inside a transaction");
    c.execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    check(&before, 20, "after ROLLBACK");
}

/// The pending ids' vectors, scanned beside the graph: from a block kept between
/// queries (outside transactions) they give what the rows' stream gives (inside one),
/// whole table and by namespace, and the block follows a pending row's new vector and a
/// new pending row.
#[test]
fn pending_block_scans_like_the_rows() {
    let c = common::mem();
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE m USING memories(dim={DIM}, exact_max=0, scan_max=0, dedup=off)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(23);
    let add = |c: &Connection, id: i64, ns: &str, v: &[f32]| {
        c.execute(
            "INSERT INTO m(id, content, namespace, embedding) VALUES (?1, ?2, ?3, ?4)",
            params![id, format!("memory {id}"), ns, blob(v)],
        )
        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
    };
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for id in 1..=400i64 {
        add(&c, id, ["a", "b"][id as usize % 2], &rng.vector(DIM));
    }
    c.execute_batch("INSERT INTO m(m) VALUES ('optimize'); COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    // Rows after the snapshot stay pending (far below the checkpoint's threshold).
    let mut pending = Vec::new();
    for id in 401..=550i64 {
        let v = rng.vector(DIM);
        add(&c, id, ["a", "b", "c"][id as usize % 3], &v);
        pending.push((id, v));
    }
    let n: i64 = c
        .query_row("SELECT count(*) FROM m_pending", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 150, "the new rows are pending");
    let compare = |c: &Connection, what: &str| {
        let mut rng = Rng(29);
        for round in 0..40 {
            let q = rng.vector(DIM);
            let k = [1usize, 5, 10, 50][round % 4];
            for ns in [None, Some("a"), Some("b"), Some("c"), Some("none")] {
                let kept = knn(c, "m", &q, k, ns, false).unwrap_or_else(|e| panic!("{e}"));
                c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
                let rows = knn(c, "m", &q, k, ns, false).unwrap_or_else(|e| panic!("{e}"));
                c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(kept, rows, "{what}: round {round}, k {k}, namespace {ns:?}");
            }
        }
    };
    compare(&c, "pending");
    for (id, v) in pending.iter().step_by(7) {
        assert_eq!(top1(&c, "m", v), *id, "a pending row finds itself");
    }
    // A pending row's new vector, and a new pending row, are seen at once.
    let v = rng.vector(DIM);
    c.execute(
        "UPDATE m SET embedding = ?1 WHERE id = 420",
        params![blob(&v)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top1(&c, "m", &v), 420);
    let w = rng.vector(DIM);
    add(&c, 600, "c", &w);
    assert_eq!(top1(&c, "m", &w), 600);
    compare(&c, "after writes");
}
