//! Keyword top-k, term at a time: FTS5's BM25 over an OR of words, without FTS5 visiting
//! every matching row through an auxiliary function.
//!
//! [`super::bm25`]'s `subcog_bm25` is called by FTS5 once per row the OR matches: FTS5
//! merges the words' doclists, builds each row's instance list and calls the function
//! through the SQL layer, about 0.25 us per row, 10-15% of a 100,000-memory table per
//! question. Here the OR query is only opened: `subcog_postings(fts, max)` is evaluated on
//! its first row and walks each phrase's own doclist with FTS5's `xQueryPhrase` (the pass
//! FTS5's `bm25()` makes anyway to count a phrase's rows), recording per phrase the row,
//! its instances and where the last one ends. [`top_k`] then merges the lists and bounds
//! every row's score by its score at the least length the row can have: each term falls
//! as the length grows, and a row holds at least as many tokens as a phrase has instances,
//! and at least up to the end of its last instance (offsets are token positions). It
//! computes the exact score, with the row's length from `<table>_fts_docsize`, only for
//! rows taken in order of falling bound, until the bound falls below the k-th exact
//! score. The result is `ORDER BY bm25(fts), rowid LIMIT k`: the same rows, the same order
//! (ties by rowid, as FTS5 visits them) and bit-identical scores (the same terms added in
//! the same phrase order; absent phrases add `+0.0` in FTS5's sum, which changes no bit).
//!
//! The walk records 16 bytes per posting; past [`MAX_POSTINGS`] the function returns NULL
//! and the caller streams the rows through `subcog_bm25` instead, so no query allocates
//! without bound.

use std::collections::BinaryHeap;
use std::ffi::{c_int, c_void};

use rusqlite::ffi;

use super::bm25::{self, Ordered, idf_of};
use crate::error::{Error, Result};

/// The function's name in SQL.
pub(crate) const NAME: &str = "subcog_postings";

/// Most postings (summed over the query's phrases) one call records: 4 Mi, 64 MiB of
/// result; an OR of common words over more than a few million rows streams instead.
pub(crate) const MAX_POSTINGS: usize = 4 << 20;

/// Bytes of one posting in the function's result: rowid (i64), instances (u32) and the
/// token position just past the last instance (u32).
const POSTING_BYTES: usize = 16;

/// What `subcog_postings` returns, decoded: the table's row count and total tokens (as
/// FTS5's `xRowCount` and `xColumnTotalSize(-1)`), and per phrase of the query its
/// postings in ascending rowid order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Postings {
    pub(crate) rows: i64,
    pub(crate) tokens: i64,
    pub(crate) phrases: Vec<Vec<Entry>>,
}

/// One posting: the row, the phrase (its index in the query) and the phrase's instances
/// in the row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) id: i64,
    pub(crate) phrase: u32,
    pub(crate) f: u32,
    /// The token offset just past the phrase's last instance in its column: the row has
    /// at least this many tokens.
    pub(crate) end: u32,
}

/// Registers `subcog_postings` on an `fts5_api` (called by [`super::bm25::register`]).
///
/// # Safety
/// `api` is a valid `fts5_api` of version 2 or later with `xCreateFunction` set.
pub(crate) unsafe fn create(api: *mut ffi::fts5_api) -> bool {
    // SAFETY: as this function's contract; FTS5 copies the name.
    unsafe {
        let Some(create) = (*api).xCreateFunction else {
            return false;
        };
        let name = c"subcog_postings";
        debug_assert_eq!(name.to_str().ok(), Some(NAME));
        create(
            api,
            name.as_ptr(),
            std::ptr::null_mut(),
            Some(postings_fn),
            None,
        ) == ffi::SQLITE_OK
    }
}

/// The walk's state, handed to `xQueryPhrase`'s callback.
struct Walk<'a> {
    api: &'a ffi::Fts5ExtensionApi,
    /// Tokens in the phrase being walked.
    size: u32,
    out: Vec<(i64, u32, u32)>,
    total: usize,
    max: usize,
    over: bool,
}

/// `xQueryPhrase`'s callback: records the sub-query's current row and its instances of
/// its one phrase. Stops the walk (SQLITE_DONE) past the cap.
unsafe extern "C" fn visit(
    _api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    user: *mut c_void,
) -> c_int {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `user` is the `&mut Walk` handed to xQueryPhrase by `collect`, alive
        // and not otherwise borrowed during the call.
        let w = unsafe { &mut *user.cast::<Walk>() };
        if w.total >= w.max {
            w.over = true;
            return ffi::SQLITE_DONE;
        }
        let (Some(rowid), Some(first), Some(next)) =
            (w.api.xRowid, w.api.xPhraseFirst, w.api.xPhraseNext)
        else {
            return ffi::SQLITE_ERROR;
        };
        let mut it = ffi::Fts5PhraseIter {
            a: std::ptr::null(),
            b: std::ptr::null(),
        };
        let (mut col, mut off): (c_int, c_int) = (0, 0);
        // SAFETY: `fts` is the sub-query's valid context for this callback; phrase 0 is
        // its one phrase; out-pointers to locals.
        let rc = unsafe { first(fts, 0, &mut it, &mut col, &mut off) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let mut n: u32 = 0;
        let mut end: u32 = 0;
        while col >= 0 {
            n = n.saturating_add(1);
            end = end.max(u32::try_from(off).unwrap_or(0).saturating_add(w.size));
            // SAFETY: as above; `it` was set by xPhraseFirst on this context.
            unsafe { next(fts, &mut it, &mut col, &mut off) };
        }
        // SAFETY: valid context.
        let id = unsafe { rowid(fts) };
        w.out.push((id, n, end));
        w.total += 1;
        ffi::SQLITE_OK
    }));
    r.unwrap_or(ffi::SQLITE_ERROR)
}

fn fail(what: &str, rc: c_int) -> String {
    bm25::fail_in(NAME, what, rc)
}

/// FTS5 calls this for the first row of the OR query (`LIMIT 1`). Never unwinds into
/// SQLite.
unsafe extern "C" fn postings_fn(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: FTS5 passes a valid api table, context and `n_val` argument values
        // for the duration of this call.
        unsafe { collect(api, fts, n_val, args) }
    });
    let r = r.unwrap_or_else(|_| Err(format!("{NAME}: internal error (panic)")));
    // SAFETY: `ctx` is the valid result context of this call; SQLITE_TRANSIENT makes
    // SQLite copy the blob before `bytes` is dropped.
    unsafe {
        match r {
            Ok(Some(bytes)) => ffi::sqlite3_result_blob(
                ctx,
                bytes.as_ptr().cast(),
                bytes.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            ),
            Ok(None) => ffi::sqlite3_result_null(ctx),
            Err(msg) => bm25::result_error(ctx, &msg),
        }
    }
}

/// Walks every phrase of the query; `None` past the cap (`max`, the first argument,
/// at most [`MAX_POSTINGS`]). The result: `rows` (i64), `tokens` (i64), the phrase count
/// (u32), then per phrase its posting count (u32) and its postings (rowid i64,
/// instances u32, end of the last instance u32), native byte order.
///
/// # Safety
/// `api`, `fts` and `n_val`/`args` as FTS5 passes them to an auxiliary function.
unsafe fn collect(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) -> std::result::Result<Option<Vec<u8>>, String> {
    // SAFETY: as this function's contract.
    let api = unsafe { &*api };
    let (Some(rows), Some(total), Some(phrases), Some(phrase_size), Some(query_phrase)) = (
        api.xRowCount,
        api.xColumnTotalSize,
        api.xPhraseCount,
        api.xPhraseSize,
        api.xQueryPhrase,
    ) else {
        return Err(format!("{NAME}: FTS5 lacks the phrase API"));
    };
    if n_val < 1 || args.is_null() {
        return Err(format!("{NAME}(fts, max): max is required"));
    }
    // SAFETY: `args` holds `n_val` >= 1 valid protected values of this call.
    let max = unsafe { ffi::sqlite3_value_int64(*args) };
    let max = usize::try_from(max)
        .map_err(|_| format!("{NAME}: max must be >= 0, got {max}"))?
        .min(MAX_POSTINGS);
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
    let n_phrase = unsafe { phrases(fts) }.max(0);
    let mut walk = Walk {
        api,
        size: 1,
        out: Vec::new(),
        total: 0,
        max,
        over: false,
    };
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&n_row.to_ne_bytes());
    bytes.extend_from_slice(&n_token.to_ne_bytes());
    bytes.extend_from_slice(&(n_phrase as u32).to_ne_bytes());
    for i in 0..n_phrase {
        walk.out.clear();
        // SAFETY: valid context; `i` < the phrase count.
        walk.size = u32::try_from(unsafe { phrase_size(fts, i) }).unwrap_or(0);
        // SAFETY: `i` < the phrase count; `walk` outlives the call, which invokes
        // `visit` with it synchronously and keeps no pointer to it.
        let rc = unsafe {
            query_phrase(
                fts,
                i,
                (&mut walk as *mut Walk).cast::<c_void>(),
                Some(visit),
            )
        };
        if walk.over {
            return Ok(None);
        }
        if rc != ffi::SQLITE_OK {
            return Err(fail("xQueryPhrase", rc));
        }
        bytes.reserve(4 + walk.out.len() * POSTING_BYTES);
        bytes.extend_from_slice(&(walk.out.len() as u32).to_ne_bytes());
        for (id, n, end) in &walk.out {
            bytes.extend_from_slice(&id.to_ne_bytes());
            bytes.extend_from_slice(&n.to_ne_bytes());
            bytes.extend_from_slice(&end.to_ne_bytes());
        }
    }
    Ok(Some(bytes))
}

/// Reads `N` bytes at `*at`, advancing it.
fn take<const N: usize>(b: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let s = b.get(*at..at.checked_add(N)?)?;
    *at += N;
    s.try_into().ok()
}

impl Postings {
    /// Decodes `subcog_postings`' result; `None` when it is malformed (it never is when
    /// it comes from this build's function).
    pub(crate) fn decode(b: &[u8]) -> Option<Postings> {
        let mut at = 0;
        let rows = i64::from_ne_bytes(take(b, &mut at)?);
        let tokens = i64::from_ne_bytes(take(b, &mut at)?);
        let n = u32::from_ne_bytes(take(b, &mut at)?) as usize;
        let mut phrases = Vec::with_capacity(n.min(b.len() / 4));
        for _ in 0..n {
            let m = u32::from_ne_bytes(take(b, &mut at)?) as usize;
            if b.len().saturating_sub(at) / POSTING_BYTES < m {
                return None;
            }
            let phrase = phrases.len() as u32;
            let list: Vec<Entry> = b
                .get(at..at + m * POSTING_BYTES)?
                .chunks_exact(POSTING_BYTES)
                .map(|c| {
                    let (id, rest) = c.split_at(8);
                    let (f, end) = rest.split_at(4);
                    Entry {
                        id: i64::from_ne_bytes(id.try_into().unwrap_or_default()),
                        phrase,
                        f: u32::from_ne_bytes(f.try_into().unwrap_or_default()),
                        end: u32::from_ne_bytes(end.try_into().unwrap_or_default()),
                    }
                })
                .collect();
            at += m * POSTING_BYTES;
            // FTS5 walks a doclist in ascending rowid order; sort if a build ever does not.
            let mut list = list;
            if !list.is_sorted_by_key(|p| p.id) {
                list.sort_unstable_by_key(|p| p.id);
            }
            phrases.push(list);
        }
        (at == b.len()).then_some(Postings {
            rows,
            tokens,
            phrases,
        })
    }
}

/// A row's positive BM25 sum for a length of `d` tokens: its entries in phrase order,
/// term by term as `fts5Bm25Function` adds them.
fn score(terms: &[Entry], idf: &[f64], avgdl: f64, d: f64) -> f64 {
    let mut score = 0.0;
    for t in terms {
        score += bm25::term(idf[t.phrase as usize], f64::from(t.f), d, avgdl);
    }
    score
}

/// Merges two runs sorted by (rowid, phrase) into `out`.
fn merge(a: &[Entry], b: &[Entry], out: &mut Vec<Entry>) {
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        // Branch-free: which side comes next is unpredictable.
        let from_b = (b[j].id, b[j].phrase) < (a[i].id, a[i].phrase);
        out.push(if from_b { b[j] } else { a[i] });
        j += usize::from(from_b);
        i += usize::from(!from_b);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// Every posting sorted by (rowid, phrase), so that a row's entries are adjacent and in
/// phrase order. The two shortest runs are merged first (as in Huffman coding): a
/// question's few common words hold most postings, and are then moved about once or
/// twice instead of once per pass.
fn merged(mut runs: Vec<Vec<Entry>>) -> Vec<Entry> {
    runs.retain(|r| !r.is_empty());
    while runs.len() > 1 {
        runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.len()));
        let (Some(a), Some(b)) = (runs.pop(), runs.pop()) else {
            break;
        };
        let mut out = Vec::new();
        merge(&a, &b, &mut out);
        runs.push(out);
    }
    runs.pop().unwrap_or_default()
}

/// Candidates taken in order of falling bound before the rest are sorted too.
const FIRST_CANDIDATES: usize = 256;

/// The best `k` rows of `p` by FTS5's BM25, best first, ties by ascending rowid: `(rowid,
/// bm25)` with FTS5's sign (negative, lower is better), exactly `ORDER BY bm25(fts),
/// rowid LIMIT k` over the rows `length` admits. `length(rowid)` gives a row's length in
/// tokens (`xColumnSize(-1)`), or `None` to leave the row out (another namespace); it is
/// called only for rows whose bound can still reach the best `k`.
///
/// # Errors
/// What `length` returns.
pub(crate) fn top_k(
    p: Postings,
    k: usize,
    mut length: impl FnMut(i64) -> Result<Option<i64>>,
) -> Result<Vec<(i64, f64)>> {
    if k == 0 || p.rows <= 0 {
        return Ok(Vec::new());
    }
    let idf: Vec<f64> = p
        .phrases
        .iter()
        .map(|l| idf_of(p.rows, l.len() as i64))
        .collect();
    let avgdl = p.tokens as f64 / p.rows as f64;
    let all = merged(p.phrases);
    // Each row: (bound, rowid, its entries' range). The bound is the score at the least
    // length the row can have: its largest instance count, or the end of its last instance.
    let mut docs: Vec<(f64, i64, u32, u32)> = Vec::new();
    let mut at = 0;
    while at < all.len() {
        let id = all[at].id;
        let mut end = at;
        let mut least = 0u32;
        while end < all.len() && all[end].id == id {
            least = least.max(all[end].f).max(all[end].end);
            end += 1;
        }
        let bound = score(&all[at..end], &idf, avgdl, f64::from(least));
        docs.push((bound, id, at as u32, end as u32));
        at = end;
    }
    // Falling bound (ties in any order: they are all scored or all below the k-th).
    let by_bound = |a: &(f64, i64, u32, u32), b: &(f64, i64, u32, u32)| b.0.total_cmp(&a.0);
    let first = FIRST_CANDIDATES.max(k.saturating_mul(2)).min(docs.len());
    if first < docs.len() {
        docs.select_nth_unstable_by(first, by_bound);
    }
    docs[..first].sort_unstable_by(by_bound);
    // The best k so far, worst on top: lower score, then higher rowid.
    let mut best: BinaryHeap<std::cmp::Reverse<(Ordered, std::cmp::Reverse<i64>)>> =
        BinaryHeap::with_capacity(k.min(4096) + 1);
    let mut sorted_rest = first == docs.len();
    let mut i = 0;
    while i < docs.len() {
        if i == first && !sorted_rest {
            docs[first..].sort_unstable_by(by_bound);
            sorted_rest = true;
        }
        let (bound, id, from, to) = docs[i];
        i += 1;
        if best.len() >= k
            && let Some(std::cmp::Reverse((kth, _))) = best.peek()
            // A bound equal to the k-th (or within rounding of it) is scored in full.
            && bound * (1.0 + 1e-9) < kth.0
        {
            break;
        }
        let Some(d) = length(id)? else {
            continue;
        };
        let s = score(&all[from as usize..to as usize], &idf, avgdl, d as f64);
        best.push(std::cmp::Reverse((Ordered(s), std::cmp::Reverse(id))));
        if best.len() > k {
            best.pop();
        }
    }
    let mut out: Vec<(i64, f64)> = best
        .into_iter()
        .map(|std::cmp::Reverse((s, std::cmp::Reverse(id)))| (id, -s.0))
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// The total of the per-column token counts in an FTS5 `_docsize` record (one SQLite
/// varint per column, `fts5StorageDecodeSizeArray`): what `xColumnSize(-1)` returns.
///
/// # Errors
/// [`Error::Index`] when the record is not a sequence of varints.
pub(crate) fn docsize_total(sz: &[u8]) -> Result<i64> {
    let mut at = 0;
    let mut total: i64 = 0;
    while at < sz.len() {
        // SQLite's varint: up to 8 bytes of 7 bits (high bit set = more), a 9th of 8 bits.
        let mut v: u64 = 0;
        let mut done = false;
        for i in 0..9 {
            let Some(&byte) = sz.get(at) else { break };
            at += 1;
            if i == 8 {
                v = (v << 8) | u64::from(byte);
                done = true;
                break;
            }
            v = (v << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                done = true;
                break;
            }
        }
        if !done {
            return Err(Error::Index(format!(
                "keyword search: a malformed FTS5 _docsize record ({} bytes)",
                sz.len()
            )));
        }
        // FTS5 reads each as a 32-bit count.
        total = total.saturating_add(i64::from(v as u32 as i32));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rng::next;

    /// Against brute force (every admitted row scored, sorted by score then rowid), with
    /// flat and skewed frequencies, rows left out, and more candidates than the first
    /// batch ([`FIRST_CANDIDATES`]).
    #[test]
    fn top_k_is_brute_force() {
        let mut r = 3u64;
        for round in 0..300 {
            let rows = 50 + (next(&mut r) % 3000) as i64;
            let n_phrase = 1 + (next(&mut r) % 6) as usize;
            let lengths: Vec<i64> = (0..=rows).map(|_| 1 + (next(&mut r) % 40) as i64).collect();
            let mut phrases = Vec::new();
            for _ in 0..n_phrase {
                let share = 1 + next(&mut r) % 100;
                let mut l = Vec::new();
                for id in 1..=rows {
                    if next(&mut r) % 100 < share {
                        let f = 1 + (next(&mut r) % (lengths[id as usize] as u64).min(4)) as u32;
                        // The last instance ends somewhere in the row.
                        let end = (f + (next(&mut r) % lengths[id as usize] as u64) as u32)
                            .min(lengths[id as usize] as u32);
                        l.push(Entry {
                            id,
                            phrase: phrases.len() as u32,
                            f,
                            end,
                        });
                    }
                }
                phrases.push(l);
            }
            let tokens: i64 = lengths[1..].iter().sum();
            let p = Postings {
                rows,
                tokens,
                phrases,
            };
            let out_every = 1 + next(&mut r) % 4;
            let admit = |id: i64| {
                (!(id as u64).is_multiple_of(out_every) || out_every == 1)
                    .then(|| lengths[id as usize])
            };
            let idf: Vec<f64> = p
                .phrases
                .iter()
                .map(|l| idf_of(rows, l.len() as i64))
                .collect();
            let avgdl = tokens as f64 / rows as f64;
            let mut want: Vec<(i64, f64)> = Vec::new();
            for id in 1..=rows {
                let Some(d) = admit(id) else { continue };
                let terms: Vec<Entry> = p
                    .phrases
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| {
                        l.iter().find(|x| x.id == id).map(|x| Entry {
                            id,
                            phrase: i as u32,
                            f: x.f,
                            end: x.end,
                        })
                    })
                    .collect();
                if !terms.is_empty() {
                    want.push((id, -score(&terms, &idf, avgdl, d as f64)));
                }
            }
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for k in [1usize, 7, 300, 5000] {
                let mut calls = 0;
                let got = top_k(p.clone(), k, |id| {
                    calls += 1;
                    Ok(admit(id))
                })
                .unwrap_or_default();
                let w: Vec<(i64, f64)> = want.iter().take(k).copied().collect();
                assert_eq!(got, w, "round {round} k {k}");
                if k == 1 && want.len() > 1000 && out_every == 1 {
                    assert!(
                        calls < want.len() / 2,
                        "round {round}: {calls} lengths read"
                    );
                }
            }
        }
    }

    #[test]
    fn docsize_varints_are_summed() {
        assert_eq!(docsize_total(&[]).ok(), Some(0));
        assert_eq!(docsize_total(&[5]).ok(), Some(5));
        assert_eq!(docsize_total(&[0x81, 0x00, 3]).ok(), Some(131));
        assert!(docsize_total(&[0x81]).is_err());
    }

    #[test]
    fn malformed_results_are_refused() {
        let mut b = Vec::new();
        b.extend_from_slice(&10i64.to_ne_bytes());
        b.extend_from_slice(&50i64.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&2u32.to_ne_bytes());
        for (id, n, end) in [(7i64, 2u32, 9u32), (3, 1, 4)] {
            b.extend_from_slice(&id.to_ne_bytes());
            b.extend_from_slice(&n.to_ne_bytes());
            b.extend_from_slice(&end.to_ne_bytes());
        }
        let p = Postings::decode(&b).unwrap_or_default();
        let e = |id, f, end| Entry {
            id,
            phrase: 0,
            f,
            end,
        };
        assert_eq!(p.phrases, vec![vec![e(3, 1, 4), e(7, 2, 9)]]);
        assert!(Postings::decode(&b[..b.len() - 1]).is_none());
        let mut longer = b.clone();
        longer.push(0);
        assert!(Postings::decode(&longer).is_none());
    }
}
