//! xBestIndex for `memories`: which WHERE terms the table consumes, and how they reach
//! xFilter.
//!
//! Each kind of term is one row of [`TERMS`]: its bit, its `idxStr` word, its column(s) and
//! operator. `idxNum` is a bit set of the consumed terms (see the `bit` constants); their
//! values are passed to xFilter in `argv` in the order of [`TERMS`] (ascending bits): the
//! MATCH operand, `k`, `namespace`, the rowid, `LIMIT`, `OFFSET`, `ranking`,
//! `include_superseded`, `as_of`. `idxStr` is a readable summary shown by EXPLAIN QUERY PLAN (e.g.
//! `knn k namespace`).
//!
//! | WHERE                                   | plan      | idxNum bits            |
//! |-----------------------------------------|-----------|------------------------|
//! | `embedding MATCH ?v AND k = ?`          | KNN       | `KNN | K`              |
//! | `content MATCH ?q [AND k = ?]`          | keyword   | `KEYWORD [| K]`        |
//! | `<table> MATCH ?text AND k = ?`         | hybrid    | `HYBRID | K`           |
//! | any of the above `AND namespace = ?`    | filtered  | `... | NAMESPACE`      |
//! | any search `AND ranking = ?json`        | re-ranked | `... | RANKING`        |
//! | `id = ?` / `rowid = ?`                  | point     | `ROWID`                |
//! | `namespace = ?`                         | ns scan   | `NAMESPACE`            |
//! | any plan `AND as_of = ?`                | as of     | `... | AS_OF`          |
//! | nothing usable                          | full scan | `0`                    |
//!
//! `LIMIT`/`OFFSET` reach xBestIndex from SQLite 3.38.0 when the query reads this table
//! alone (no join, DISTINCT, GROUP BY or aggregate; every WHERE term on this table; ORDER
//! BY, if any, on its columns), and in a query with a MATCH term only from 3.41.0 (3.40.1
//! never passes them there). They are consumed as values only, and only when every other
//! term is consumed too: SQLite still applies them, and a search without `k` uses
//! `LIMIT + OFFSET` as its `k`.

use crate::row::col;

/// Bits of `idxNum`.
pub mod bit {
    /// `embedding MATCH ?`: KNN.
    pub const KNN: i32 = 1;
    /// `content MATCH ?`: FTS5 keyword search.
    pub const KEYWORD: i32 = 2;
    /// `<table> MATCH ?`: hybrid search.
    pub const HYBRID: i32 = 4;
    /// `k = ?`.
    pub const K: i32 = 8;
    /// `namespace = ?`.
    pub const NAMESPACE: i32 = 16;
    /// `id = ?` or `rowid = ?`.
    pub const ROWID: i32 = 32;
    /// `LIMIT ?`.
    pub const LIMIT: i32 = 64;
    /// `OFFSET ?`.
    pub const OFFSET: i32 = 128;
    /// More than one MATCH term: an error at xFilter.
    pub const CONFLICT: i32 = 256;
    /// `ranking = ?`: per-query ranking weights (JSON).
    pub const RANKING: i32 = 512;
    /// `include_superseded = ?`: searches also return superseded memories when true.
    pub const INCLUDE_SUPERSEDED: i32 = 1024;
    /// `as_of = ?`: the scan or search runs against the table as of a version.
    pub const AS_OF: i32 = 2048;
    /// The statement reads no stored column (only `id`/rowid, `embedding`, `distance`,
    /// `score` and the hidden columns, from xBestIndex's `colUsed`,
    /// [`super::ids_only`]): a search need not read its results' rows. Takes no argv
    /// value.
    pub const IDS_ONLY: i32 = 4096;
    /// All bits that take an argv value, in argv order: the bits of [`super::TERMS`].
    pub const ARGS: [i32; super::TERMS.len()] = {
        let mut a = [0; super::TERMS.len()];
        let mut i = 0;
        while i < a.len() {
            a[i] = super::TERMS[i].bit;
            i += 1;
        }
        a
    };
}

/// The columns a kind of term is on.
#[derive(Debug, Clone, Copy)]
pub enum On {
    /// One of these columns (-1 = the rowid).
    Columns(&'static [i32]),
    /// Any column: `LIMIT` and `OFFSET` are on none.
    Any,
}

/// One kind of WHERE term the table consumes: its `idxNum` bit, its word in `idxStr`, and
/// the column(s) and operator that make a term of this kind.
#[derive(Debug, Clone, Copy)]
pub struct TermSpec {
    /// Its bit of `idxNum` (one of [`bit`]).
    pub bit: i32,
    /// Its word in `idxStr` (EXPLAIN QUERY PLAN).
    pub word: &'static str,
    /// The column(s) it is on.
    pub on: On,
    /// Its operator.
    pub op: Op,
}

impl TermSpec {
    /// Whether a term on `column` with `op` is of this kind.
    pub fn accepts(&self, column: i32, op: Op) -> bool {
        op == self.op
            && match self.on {
                On::Columns(cs) => cs.contains(&column),
                On::Any => true,
            }
    }

    /// `LIMIT`/`OFFSET`: SQLite applies them itself (they are never omitted) and the table
    /// takes their values only when every other term is consumed.
    pub fn value_only(&self) -> bool {
        matches!(self.op, Op::Limit | Op::Offset)
    }
}

/// Every kind of term the table consumes, in argv order (ascending bits): a consumed
/// term's value reaches xFilter at the position of its kind among the consumed ones.
pub const TERMS: &[TermSpec] = &[
    TermSpec {
        bit: bit::KNN,
        word: "knn",
        on: On::Columns(&[col::EMBEDDING]),
        op: Op::Match,
    },
    TermSpec {
        bit: bit::KEYWORD,
        word: "keyword",
        on: On::Columns(&[col::CONTENT]),
        op: Op::Match,
    },
    TermSpec {
        bit: bit::HYBRID,
        word: "hybrid",
        on: On::Columns(&[col::TABLE]),
        op: Op::Match,
    },
    TermSpec {
        bit: bit::K,
        word: "k",
        on: On::Columns(&[col::K]),
        op: Op::Eq,
    },
    TermSpec {
        bit: bit::NAMESPACE,
        word: "namespace",
        on: On::Columns(&[col::NAMESPACE]),
        op: Op::Eq,
    },
    TermSpec {
        bit: bit::ROWID,
        word: "rowid",
        on: On::Columns(&[col::ID, -1]),
        op: Op::Eq,
    },
    TermSpec {
        bit: bit::LIMIT,
        word: "limit",
        on: On::Any,
        op: Op::Limit,
    },
    TermSpec {
        bit: bit::OFFSET,
        word: "offset",
        on: On::Any,
        op: Op::Offset,
    },
    TermSpec {
        bit: bit::RANKING,
        word: "ranking",
        on: On::Columns(&[col::RANKING]),
        op: Op::Eq,
    },
    TermSpec {
        bit: bit::INCLUDE_SUPERSEDED,
        word: "include_superseded",
        on: On::Columns(&[col::INCLUDE_SUPERSEDED]),
        op: Op::Eq,
    },
    TermSpec {
        bit: bit::AS_OF,
        word: "as_of",
        on: On::Columns(&[col::AS_OF]),
        op: Op::Eq,
    },
];

/// The operator of a WHERE term, as far as the planner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `MATCH`
    Match,
    /// `LIMIT` (SQLite >= 3.38)
    Limit,
    /// `OFFSET` (SQLite >= 3.38)
    Offset,
    /// Anything else: left to SQLite.
    Other,
}

/// One WHERE term offered to xBestIndex.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    /// Column index (-1 = rowid).
    pub column: i32,
    /// Operator.
    pub op: Op,
    /// Whether its right-hand side is available for this plan.
    pub usable: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Bit set of consumed terms.
    pub idx_num: i32,
    /// For each offered term: `Some((argv_index starting at 1, omit))` when consumed.
    pub usage: Vec<Option<(i32, bool)>>,
    /// Whether the rows come out in the ORDER BY order asked for.
    pub order_by_consumed: bool,
    /// Estimated cost (arbitrary units, relative).
    pub cost: f64,
    /// Estimated rows.
    pub rows: i64,
    /// Summary for EXPLAIN QUERY PLAN.
    pub idx_str: String,
}

/// Whether the rows of plan `idx_num` (`search`: its MATCH bit, 0 for none) come out in
/// the ORDER BY order asked for: by distance for an un-re-ranked KNN, by score descending
/// for any search, by id for scans.
fn consumes_order(order_by: &[(i32, bool)], search: i32, idx_num: i32, reranks: bool) -> bool {
    match order_by {
        [] => true,
        [(c, desc)] => {
            if search != 0 {
                let by_distance = search == bit::KNN && !reranks && idx_num & bit::RANKING == 0;
                (*c == col::DISTANCE && !desc && by_distance) || (*c == col::SCORE && *desc)
            } else {
                (*c == col::ID || *c == -1) && !desc
            }
        }
        _ => false,
    }
}

/// `(cost, rows)` of a plan, relative: a search (cheaper in a namespace) beats a scan,
/// a point lookup beats both, a namespace scan beats a full scan.
fn estimate(search: i32, idx_num: i32) -> (f64, i64) {
    if search != 0 {
        (
            if idx_num & bit::NAMESPACE != 0 {
                10.0
            } else {
                20.0
            },
            10,
        )
    } else if idx_num & bit::ROWID != 0 {
        (1.0, 1)
    } else if idx_num & bit::NAMESPACE != 0 {
        (1_000.0, 1_000)
    } else {
        (1_000_000.0, 100_000)
    }
}

/// Whether a statement whose `colUsed` (xBestIndex: bit `i` = column `i` read, bit 63 =
/// some column from 63 on) is `col_used` reads none of the columns a search must read the
/// stored row for: `content` to `updated_at`, `expires_at`, `superseded_by`. The id,
/// `embedding` (read by id), `distance`, `score`, `explain` and the hidden columns come
/// without it.
pub fn ids_only(col_used: u64) -> bool {
    const ROW: [i32; 10] = [
        col::CONTENT,
        col::NAMESPACE,
        col::TAGS,
        col::METADATA,
        col::SOURCE,
        col::IMPORTANCE,
        col::CREATED_AT,
        col::UPDATED_AT,
        col::EXPIRES_AT,
        col::SUPERSEDED_BY,
    ];
    let mask = ROW.iter().fold(1u64 << 63, |m, c| m | (1u64 << c));
    col_used & mask == 0
}

/// `None` when a MATCH on one of our columns is not usable in this combination (the
/// caller answers SQLITE_CONSTRAINT so SQLite tries another), else the plan.
///
/// `reranks`: the table's options put recency or importance into the ranking, so a KNN
/// search's rows come out by final score, not by distance.
pub fn plan(terms: &[Term], order_by: &[(i32, bool)], reranks: bool) -> Option<Decision> {
    // For each kind of term (slot of TERMS), the first usable offered term of that kind.
    let mut chosen: [Option<usize>; TERMS.len()] = [None; TERMS.len()];
    let mut matches = 0;
    for (i, t) in terms.iter().enumerate() {
        let Some(slot) = TERMS.iter().position(|s| s.accepts(t.column, t.op)) else {
            continue;
        };
        if !t.usable {
            // A MATCH or as_of term must reach xFilter: SQLite cannot evaluate either.
            if t.op == Op::Match || t.column == col::AS_OF {
                return None;
            }
            continue;
        }
        if t.op == Op::Match {
            matches += 1;
        }
        if chosen[slot].is_none() {
            chosen[slot] = Some(i);
        }
    }
    let bits = |chosen: &[Option<usize>]| {
        TERMS
            .iter()
            .zip(chosen)
            .filter(|(_, c)| c.is_some())
            .fold(0, |n, (s, _)| n | s.bit)
    };
    let search = bits(&chosen) & (bit::KNN | bit::KEYWORD | bit::HYBRID);
    // A point lookup beats everything but a search (a search with id = ? is rare; the id
    // term is then left to SQLite).
    if search != 0 {
        for (s, c) in TERMS.iter().zip(chosen.iter_mut()) {
            if s.bit == bit::ROWID {
                *c = None;
            }
        }
    }
    // LIMIT/OFFSET stand in for `k` only when every other term is consumed here: a term
    // SQLite applies after the search (`importance > 0.5`, a second `k`, an `id` beside a
    // MATCH) would filter the LIMIT rows and return fewer. SQLite >= 3.4x declines such a
    // plan itself (`allConstraintsUsed`: it re-plans without LIMIT); 3.41.0 passes it.
    let all_used = terms
        .iter()
        .enumerate()
        .all(|(i, t)| matches!(t.op, Op::Limit | Op::Offset) || chosen.contains(&Some(i)));
    if !all_used {
        for (s, c) in TERMS.iter().zip(chosen.iter_mut()) {
            if s.value_only() {
                *c = None;
            }
        }
    }
    let mut idx_num = bits(&chosen);
    if matches > 1 {
        idx_num |= bit::CONFLICT;
    }
    let mut usage = vec![None; terms.len()];
    let mut argv = 0;
    for (s, c) in TERMS.iter().zip(&chosen) {
        let Some(i) = *c else { continue };
        argv += 1;
        // LIMIT/OFFSET stay SQLite's job; everything else we enforce ourselves.
        usage[i] = Some((argv, !s.value_only()));
    }
    let order_by_consumed = consumes_order(order_by, search, idx_num, reranks);
    let (cost, rows) = estimate(search, idx_num);
    let mut words: Vec<&str> = TERMS
        .iter()
        .filter(|s| idx_num & s.bit != 0)
        .map(|s| s.word)
        .collect();
    if words.is_empty() {
        words.push("fullscan");
    }
    Some(Decision {
        idx_num,
        usage,
        order_by_consumed,
        cost,
        rows,
        idx_str: words.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(column: i32, op: Op) -> Term {
        Term {
            column,
            op,
            usable: true,
        }
    }

    /// TERMS is in argv order (ascending single bits, CONFLICT not among them), its bits
    /// are `bit::ARGS` with the values xFilter (vtab.rs) destructures, and each kind
    /// accepts exactly its own column and operator.
    #[test]
    fn terms_table_matches_the_bits() {
        assert_eq!(
            bit::ARGS,
            [
                bit::KNN,
                bit::KEYWORD,
                bit::HYBRID,
                bit::K,
                bit::NAMESPACE,
                bit::ROWID,
                bit::LIMIT,
                bit::OFFSET,
                bit::RANKING,
                bit::INCLUDE_SUPERSEDED,
                bit::AS_OF,
            ]
        );
        assert_eq!(
            bit::ARGS,
            [1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048],
            "idxNum bits are part of query plans"
        );
        assert_eq!(bit::CONFLICT, 256);
        // An as_of term SQLite cannot hand over (a join's column not yet known) makes the
        // plan unusable, as an unusable MATCH does: SQLite cannot evaluate it itself.
        let unusable = Term {
            column: col::AS_OF,
            op: Op::Eq,
            usable: false,
        };
        assert_eq!(plan(&[unusable], &[], false), None);
        for w in TERMS.windows(2) {
            assert!(w[0].bit < w[1].bit, "{} before {}", w[0].word, w[1].word);
        }
        let mut words = Vec::new();
        for s in TERMS {
            assert_eq!(s.bit.count_ones(), 1, "{}", s.word);
            assert_ne!(s.bit, bit::CONFLICT);
            assert!(!words.contains(&s.word));
            words.push(s.word);
            // A lone term of this kind (with a search beside the rowid, LIMIT and OFFSET,
            // which need one to mean anything) is consumed as this bit, in `idxStr` as its word.
            let column = match s.on {
                On::Columns(cs) => cs[0],
                On::Any => -1,
            };
            let d = plan(&[t(column, s.op)], &[], false).unwrap_or_else(|| panic!());
            assert_eq!(d.idx_num, s.bit, "{}", s.word);
            assert_eq!(d.idx_str, s.word);
            assert_eq!(d.usage, vec![Some((1, !s.value_only()))]);
            // No other kind takes such a term; its operator on another column, or another
            // operator on its column, is not this kind.
            assert_eq!(TERMS.iter().filter(|k| k.accepts(column, s.op)).count(), 1);
            if let On::Columns(cs) = s.on {
                let other = (-1..=col::TABLE).find(|c| !cs.contains(c)).unwrap_or(99);
                assert!(!s.accepts(other, s.op), "{}", s.word);
                let other_op = if s.op == Op::Eq { Op::Match } else { Op::Eq };
                assert!(!s.accepts(column, other_op), "{}", s.word);
            }
        }
        assert_eq!(
            words,
            [
                "knn",
                "keyword",
                "hybrid",
                "k",
                "namespace",
                "rowid",
                "limit",
                "offset",
                "ranking",
                "include_superseded",
                "as_of"
            ]
        );
        let rowid = TERMS.iter().find(|s| s.bit == bit::ROWID);
        assert!(rowid.is_some_and(|s| s.accepts(col::ID, Op::Eq) && s.accepts(-1, Op::Eq)));
    }

    #[test]
    fn knn_with_k_and_namespace() {
        let d = plan(
            &[
                t(col::NAMESPACE, Op::Eq),
                t(col::EMBEDDING, Op::Match),
                t(col::K, Op::Eq),
            ],
            &[(col::DISTANCE, false)],
            false,
        );
        let d = d.unwrap_or_else(|| panic!("no plan"));
        assert_eq!(d.idx_num, bit::KNN | bit::K | bit::NAMESPACE);
        // argv order: MATCH, k, namespace
        assert_eq!(
            d.usage,
            vec![Some((3, true)), Some((1, true)), Some((2, true))]
        );
        assert!(d.order_by_consumed);
        assert_eq!(d.idx_str, "knn k namespace");
    }

    #[test]
    fn reranked_knn_leaves_distance_order_to_sqlite() {
        let terms = [t(col::EMBEDDING, Op::Match), t(col::K, Op::Eq)];
        let by_distance = [(col::DISTANCE, false)];
        let d = plan(&terms, &by_distance, true).unwrap_or_else(|| panic!());
        assert!(!d.order_by_consumed);
        let with_ranking = [
            t(col::EMBEDDING, Op::Match),
            t(col::K, Op::Eq),
            t(col::RANKING, Op::Eq),
        ];
        let d = plan(&with_ranking, &by_distance, false).unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, bit::KNN | bit::K | bit::RANKING);
        assert!(!d.order_by_consumed);
        assert_eq!(d.idx_str, "knn k ranking");
        let d = plan(&with_ranking, &[(col::SCORE, true)], false).unwrap_or_else(|| panic!());
        assert!(d.order_by_consumed);
    }

    #[test]
    fn limit_is_passed_but_not_omitted() {
        let d = plan(&[t(col::TABLE, Op::Match), t(-1, Op::Limit)], &[], false)
            .unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, bit::HYBRID | bit::LIMIT);
        assert_eq!(d.usage, vec![Some((1, true)), Some((2, false))]);
    }

    #[test]
    fn limit_is_left_alone_when_another_term_is_not_consumed() {
        // `importance > 0.5` is applied by SQLite after the search: LIMIT rows of the
        // search would be filtered down to fewer, so LIMIT must not stand in for k.
        let terms = [
            t(col::EMBEDDING, Op::Match),
            t(col::IMPORTANCE, Op::Other),
            t(-1, Op::Limit),
            t(-1, Op::Offset),
        ];
        let d = plan(&terms, &[], false).unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, bit::KNN);
        assert_eq!(d.usage, vec![Some((1, true)), None, None, None]);
        assert_eq!(d.idx_str, "knn");
        // An id term beside a search is left to SQLite too.
        let terms = [
            t(col::TABLE, Op::Match),
            t(col::ID, Op::Eq),
            t(-1, Op::Limit),
        ];
        let d = plan(&terms, &[], false).unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, bit::HYBRID);
        // Every term consumed: LIMIT and OFFSET are passed.
        let terms = [
            t(col::TABLE, Op::Match),
            t(col::NAMESPACE, Op::Eq),
            t(-1, Op::Limit),
            t(-1, Op::Offset),
        ];
        let d = plan(&terms, &[], false).unwrap_or_else(|| panic!());
        assert_eq!(
            d.idx_num,
            bit::HYBRID | bit::NAMESPACE | bit::LIMIT | bit::OFFSET
        );
        assert_eq!(
            d.usage,
            vec![
                Some((1, true)),
                Some((2, true)),
                Some((3, false)),
                Some((4, false))
            ]
        );
    }

    #[test]
    fn unusable_match_rejects_the_plan() {
        let terms = [Term {
            column: col::EMBEDDING,
            op: Op::Match,
            usable: false,
        }];
        assert!(plan(&terms, &[], false).is_none());
    }

    #[test]
    fn ids_only_follows_the_row_columns() {
        let bit = |c: i32| 1u64 << c;
        assert!(ids_only(0));
        assert!(ids_only(
            bit(col::ID) | bit(col::DISTANCE) | bit(col::SCORE) | bit(col::K) | bit(col::EMBEDDING)
        ));
        assert!(ids_only(
            bit(col::EXPLAIN) | bit(col::AS_OF) | bit(col::TABLE)
        ));
        for c in [
            col::CONTENT,
            col::UPDATED_AT,
            col::EXPIRES_AT,
            col::SUPERSEDED_BY,
        ] {
            assert!(!ids_only(bit(col::ID) | bit(c)), "column {c}");
        }
        assert!(!ids_only(1u64 << 63));
        assert!(!ids_only(u64::MAX));
    }

    #[test]
    fn two_matches_conflict() {
        let d = plan(
            &[t(col::EMBEDDING, Op::Match), t(col::CONTENT, Op::Match)],
            &[],
            false,
        )
        .unwrap_or_else(|| panic!());
        assert!(d.idx_num & bit::CONFLICT != 0);
    }

    #[test]
    fn rowid_lookup_and_scans() {
        let d = plan(&[t(col::ID, Op::Eq)], &[], false).unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, bit::ROWID);
        assert_eq!(d.rows, 1);
        let d = plan(&[t(col::IMPORTANCE, Op::Other)], &[(col::ID, false)], false)
            .unwrap_or_else(|| panic!());
        assert_eq!(d.idx_num, 0);
        assert_eq!(d.usage, vec![None]);
        assert!(d.order_by_consumed);
        let d = plan(&[], &[(col::CREATED_AT, true)], false).unwrap_or_else(|| panic!());
        assert!(!d.order_by_consumed);
    }

    #[test]
    fn order_by_score_desc_is_consumed_for_searches() {
        let d = plan(&[t(col::CONTENT, Op::Match)], &[(col::SCORE, true)], false)
            .unwrap_or_else(|| panic!());
        assert!(d.order_by_consumed);
        let d = plan(
            &[t(col::CONTENT, Op::Match)],
            &[(col::DISTANCE, false)],
            false,
        )
        .unwrap_or_else(|| panic!());
        assert!(!d.order_by_consumed);
    }
}
