//! `subcog_bm25(fts, k)`: FTS5's own BM25, computed in full only for rows that can still
//! be among the best `k`.
//!
//! FTS5's `bm25()` auxiliary function (`ext/fts5/fts5_aux.c`, `fts5Bm25Function`) scores
//! every row that matches: for each it counts the phrases' instances and reads the row's
//! length in tokens from the `_docsize` shadow table, a B-tree lookup per row that is
//! most of the cost of a keyword query (an OR of a question's words matches about 10% of
//! a 100,000-memory table). `ORDER BY bm25(..) LIMIT k` then keeps k of them.
//!
//! This function returns the same score, by the same arithmetic in the same order, for
//! every row that can be among the `k` best, and skips the length lookup for the others.
//! The score of a row is
//!
//! ```text
//! sum over phrases i of  idf(i) * f(i) * (k1 + 1) / (f(i) + k1 * (1 - b + b * D / avgdl))
//! ```
//!
//! with `f(i)` the instances of phrase i in the row, `D` the row's length in tokens,
//! `avgdl` the mean length, `k1 = 1.2`, `b = 0.75` and `idf(i) = ln((N - n(i) + 0.5) /
//! (n(i) + 0.5))` (at least 1e-6), as in FTS5. Each term falls as `D` grows, and a row
//! holds at least `max f(i)` tokens, so the score with `D = max f(i)` is an upper bound
//! that needs only the instance counts (already in memory for the row). The function keeps
//! the k best exact scores seen so far in the query's auxiliary data; a row whose bound is
//! below the k-th of them cannot be among the final k (that k-th only rises) and gets
//! [`SKIPPED`], which sorts after every real score (real scores are negative). So
//! `ORDER BY subcog_bm25(fts, k) LIMIT k` returns exactly the rows and scores of
//! `ORDER BY bm25(fts) LIMIT k`.
//!
//! `subcog_bm25(fts, k, df_1, .., df_n)`: the document frequencies of the query's `n`
//! phrases are given (keyword search keeps them per connection, see
//! `Store::keyword_words`) instead of counted by a pass over each phrase's rows.
//!
//! Registered per connection through the `fts5_api` pointer (`SELECT fts5(?1)` with
//! `sqlite3_bind_pointer`, as the FTS5 documentation describes: "Extending FTS5").

use std::collections::BinaryHeap;
use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use rusqlite::Connection;
use rusqlite::ffi;

/// The function's name in SQL.
pub(crate) const NAME: &str = "subcog_bm25";

/// FTS5's `bm25()` constants (`fts5_aux.c`).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// One phrase's BM25 term for `f` instances in a row of `d` tokens, mean length `avgdl`:
/// `idf * f * (k1 + 1) / (f + k1 * (1 - b + b * d / avgdl))`, in `fts5Bm25Function`'s
/// order of operations (so sums of it are bit-identical to FTS5's).
pub(super) fn term(idf: f64, f: f64, d: f64, avgdl: f64) -> f64 {
    idf * ((f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / avgdl)))
}

/// What a row that cannot be among the best `k` gets: after every real score, which is
/// negative (FTS5's sign: lower is better).
pub(crate) const SKIPPED: f64 = 1.0;

/// Registers `subcog_bm25` and [`super::postings`]' `subcog_postings` on `conn`'s FTS5. Returns `false` when the connection's SQLite
/// has no FTS5 (no `fts5()` function): keyword search then cannot run anyway.
pub(crate) fn register(conn: &Connection) -> bool {
    // SAFETY: `conn.handle()` is a valid open database for the duration of this call
    // (we hold `&Connection`). The statement is prepared, stepped once and finalized
    // here; `api` outlives it, and SQLite writes the `fts5_api*` into it through the
    // pointer binding typed "fts5_api_ptr" during the step. The api object lives as long
    // as the connection, and `xCreateFunction` copies the name.
    unsafe {
        let db = conn.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            return false;
        }
        let mut api: *mut ffi::fts5_api = ptr::null_mut();
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast::<c_void>(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
        // Version 2 (SQLite 3.20+) has xCreateFunction at the offset we read.
        if api.is_null() || (*api).iVersion < 2 {
            return false;
        }
        let Some(create) = (*api).xCreateFunction else {
            return false;
        };
        let name = c"subcog_bm25";
        debug_assert_eq!(name.to_str().ok(), Some(NAME));
        create(api, name.as_ptr(), ptr::null_mut(), Some(bm25_topk), None) == ffi::SQLITE_OK
            && super::postings::create(api)
    }
}

/// The query's constants and the k best exact scores so far (as positive scores, the
/// smallest on top).
struct Query {
    /// The idf of each phrase.
    idf: Vec<f64>,
    avgdl: f64,
    k: usize,
    best: BinaryHeap<std::cmp::Reverse<Ordered>>,
    freq: Vec<f64>,
}

/// An `f64` with a total order (scores and bounds are finite).
#[derive(Clone, Copy)]
pub(super) struct Ordered(pub(super) f64);
impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One FTS5 call: an error message, or the score.
type Outcome = std::result::Result<f64, String>;

unsafe extern "C" fn drop_query(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: `p` is the `Box<Query>` leaked by `query_of`, handed to FTS5 with this
        // destructor, which FTS5 calls exactly once.
        drop(unsafe { Box::from_raw(p.cast::<Query>()) });
    }
}

/// FTS5 calls this once per matching row. Never unwinds into SQLite.
unsafe extern "C" fn bm25_topk(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: FTS5 passes a valid api table, context and `n_val` argument values
        // for the duration of this call.
        unsafe { score(api, fts, n_val, args) }
    });
    let r = r.unwrap_or_else(|_| Err(format!("{NAME}: internal error (panic)")));
    // SAFETY: `ctx` is the valid result context of this call.
    unsafe {
        match r {
            Ok(s) => ffi::sqlite3_result_double(ctx, s),
            Err(msg) => result_error(ctx, &msg),
        }
    }
}

fn fail(what: &str, rc: c_int) -> String {
    fail_in(NAME, what, rc)
}

/// `"<function>: <what>: <SQLite's text for rc>"`.
pub(super) fn fail_in(function: &str, what: &str, rc: c_int) -> String {
    // SAFETY: sqlite3_errstr returns a static string for any code.
    let s = unsafe { CStr::from_ptr(ffi::sqlite3_errstr(rc)) };
    format!("{function}: {what}: {}", s.to_string_lossy())
}

/// Sets an auxiliary function's error result (NULs, which SQLite would cut at, replaced).
///
/// # Safety
/// `ctx` is the valid result context of the current call.
pub(super) unsafe fn result_error(ctx: *mut ffi::sqlite3_context, msg: &str) {
    let msg = msg.replace('\0', " ");
    // SAFETY: as this function's contract; SQLite copies the message.
    unsafe { ffi::sqlite3_result_error(ctx, msg.as_ptr().cast(), msg.len() as c_int) };
}

/// The score of the current row (see the module doc).
///
/// # Safety
/// `api`, `fts` and `n_val`/`args` as FTS5 passes them to an auxiliary function.
unsafe fn score(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) -> Outcome {
    // SAFETY: as this function's contract.
    let api = unsafe { &*api };
    let (Some(inst_count), Some(inst), Some(column_size)) =
        (api.xInstCount, api.xInst, api.xColumnSize)
    else {
        return Err(format!("{NAME}: FTS5 lacks the instance API"));
    };
    // SAFETY: as this function's contract; `query_of` returns the query's own auxiliary
    // data, alive until FTS5 drops it after the query.
    let q = unsafe { &mut *query_of(api, fts, n_val, args)? };
    q.freq.iter_mut().for_each(|f| *f = 0.0);
    let mut n_inst: c_int = 0;
    // SAFETY: valid context; out-pointers to locals.
    let rc = unsafe { inst_count(fts, &mut n_inst) };
    if rc != ffi::SQLITE_OK {
        return Err(fail("xInstCount", rc));
    }
    for i in 0..n_inst {
        let (mut ip, mut ic, mut io) = (0, 0, 0);
        // SAFETY: `i` < the instance count; out-pointers to locals.
        let rc = unsafe { inst(fts, i, &mut ip, &mut ic, &mut io) };
        if rc != ffi::SQLITE_OK {
            return Err(fail("xInst", rc));
        }
        if let Some(f) = usize::try_from(ip).ok().and_then(|ip| q.freq.get_mut(ip)) {
            *f += 1.0;
        }
    }
    let full = q.best.len() >= q.k;
    if full {
        let min_len = q.freq.iter().copied().fold(0.0, f64::max);
        let bound = q.sum(min_len);
        let kth = q.best.peek().map_or(0.0, |r| r.0.0);
        // A bound equal to the k-th (or within rounding of it) is scored in full.
        if bound * (1.0 + 1e-9) < kth {
            return Ok(SKIPPED);
        }
    }
    let mut n_tok: c_int = 0;
    // SAFETY: valid context; column -1 = every column; out-pointer to a local.
    let rc = unsafe { column_size(fts, -1, &mut n_tok) };
    if rc != ffi::SQLITE_OK {
        return Err(fail("xColumnSize", rc));
    }
    let s = q.sum(f64::from(n_tok));
    if q.k > 0 {
        q.best.push(std::cmp::Reverse(Ordered(s)));
        if q.best.len() > q.k {
            q.best.pop();
        }
    }
    Ok(-s)
}

impl Query {
    /// The (positive) BM25 sum for the current row's `freq` and a length of `d` tokens,
    /// term by term in phrase order as `fts5Bm25Function` adds them.
    fn sum(&self, d: f64) -> f64 {
        let mut score = 0.0;
        for (idf, f) in self.idf.iter().zip(&self.freq) {
            score += term(*idf, *f, d, self.avgdl);
        }
        score
    }
}

/// FTS5's idf of a phrase found in `hits` of `rows` rows: `ln((N - n + 0.5) / (n + 0.5))`,
/// at least 1e-6 (`fts5Bm25GetData`).
pub(super) fn idf_of(rows: i64, hits: i64) -> f64 {
    let x = ((rows - hits) as f64 + 0.5) / (hits as f64 + 0.5);
    let x = x.ln();
    if x <= 0.0 { 1e-6 } else { x }
}

/// Counts the rows `xQueryPhrase` visits.
unsafe extern "C" fn count_row(
    _api: *const ffi::Fts5ExtensionApi,
    _fts: *mut ffi::Fts5Context,
    user: *mut c_void,
) -> c_int {
    // SAFETY: `user` is the `&mut i64` handed to xQueryPhrase below, alive during it.
    unsafe { *user.cast::<i64>() += 1 };
    ffi::SQLITE_OK
}

/// The query's auxiliary data, computed at its first row as `fts5Bm25GetData` does: the
/// row count, the mean length, each phrase's idf (one pass over its rows).
///
/// # Safety
/// As [`score`].
unsafe fn query_of(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) -> std::result::Result<*mut Query, String> {
    let (Some(get), Some(set), Some(rows), Some(total), Some(phrases), Some(query_phrase)) = (
        api.xGetAuxdata,
        api.xSetAuxdata,
        api.xRowCount,
        api.xColumnTotalSize,
        api.xPhraseCount,
        api.xQueryPhrase,
    ) else {
        return Err(format!("{NAME}: FTS5 lacks the auxiliary-data API"));
    };
    // SAFETY: valid context (this function's contract).
    let p = unsafe { get(fts, 0) };
    if !p.is_null() {
        return Ok(p.cast::<Query>());
    }
    let arg = |i: c_int| -> Option<i64> {
        if i >= n_val || args.is_null() {
            return None;
        }
        // SAFETY: `args` holds `n_val` valid protected values of this call; `i` < n_val.
        Some(unsafe { ffi::sqlite3_value_int64(*args.add(i as usize)) })
    };
    let Some(k) = arg(0) else {
        return Err(format!("{NAME}(fts, k): k is required"));
    };
    let k = usize::try_from(k).map_err(|_| format!("{NAME}: k must be >= 0, got {k}"))?;
    let (mut n_row, mut n_token) = (0i64, 0i64);
    // SAFETY: valid context; out-pointers to locals.
    let rc = unsafe { rows(fts, &mut n_row) };
    if rc != ffi::SQLITE_OK {
        return Err(fail("xRowCount", rc));
    }
    // SAFETY: as above.
    let rc = unsafe { total(fts, -1, &mut n_token) };
    if rc != ffi::SQLITE_OK {
        return Err(fail("xColumnTotalSize", rc));
    }
    // SAFETY: valid context.
    let n_phrase = usize::try_from(unsafe { phrases(fts) }).unwrap_or(0);
    let given = usize::try_from(n_val).unwrap_or(0).saturating_sub(1);
    if given != 0 && given != n_phrase {
        return Err(format!(
            "{NAME}: expected {n_phrase} document frequencies (one per phrase), got {given}"
        ));
    }
    let mut idf = Vec::with_capacity(n_phrase);
    for i in 0..n_phrase {
        let hits = match arg(1 + i as c_int) {
            Some(df) if given != 0 => df,
            _ => {
                let mut hits: i64 = 0;
                // SAFETY: `i` < the phrase count; `hits` outlives the call, which
                // invokes `count_row` with it synchronously.
                let rc = unsafe {
                    query_phrase(
                        fts,
                        i as c_int,
                        (&mut hits as *mut i64).cast::<c_void>(),
                        Some(count_row),
                    )
                };
                if rc != ffi::SQLITE_OK {
                    return Err(fail("xQueryPhrase", rc));
                }
                hits
            }
        };
        idf.push(idf_of(n_row, hits));
    }
    let q = Box::new(Query {
        idf,
        avgdl: n_token as f64 / n_row as f64,
        k,
        best: BinaryHeap::with_capacity(k.min(4096) + 1),
        freq: vec![0.0; n_phrase],
    });
    let p = Box::into_raw(q);
    // SAFETY: valid context; FTS5 owns `p` from here and frees it with `drop_query`
    // (also when this call fails: it calls the destructor then).
    let rc = unsafe { set(fts, p.cast::<c_void>(), Some(drop_query)) };
    if rc != ffi::SQLITE_OK {
        return Err(fail("xSetAuxdata", rc));
    }
    Ok(p)
}
