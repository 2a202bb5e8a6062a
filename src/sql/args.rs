//! Argument decoding: xUpdate's and xFilter's SQL values into the table layer's types
//! ([`NewRow`], [`Change`], [`Query`]), with SQLite's column affinities and errors that
//! name the column, the expected and the actual value.

use rusqlite::types::ValueRef;
use rusqlite::vtab::Values;

use super::planner::bit;
use crate::error::{Error, Result};
use crate::row::{self, col};
use crate::search::rank::Ranking;
use crate::search::{self, MAX_K};
use crate::table::MemoryTable;
use crate::table::history::Target;
use crate::table::query::{Query, Search};
use crate::table::write::NewRow;
use crate::vector;

/// Argument `i` of xUpdate / xFilter.
pub(super) fn arg<'a>(values: &'a Values<'a>, i: usize) -> Result<ValueRef<'a>> {
    values
        .iter()
        .nth(i)
        .ok_or_else(|| Error::invalid(format!("missing argument {i}")))
}

/// The value of column `c` among xUpdate's arguments (`argv[2 + c]`).
pub(super) fn column<'a>(values: &'a Values<'a>, c: i32) -> Result<ValueRef<'a>> {
    arg(values, (c + 2) as usize)
}

/// The columns of a written row (`id`: the explicit id from the `id` column, else
/// `rowid`, for an INSERT). The embedding is checked against the table's `dim`.
///
/// # Errors
/// [`Error::Invalid`] naming the column, what it expects and what it got.
pub(super) fn new_row(values: &Values<'_>, rowid: ValueRef<'_>, dim: usize) -> Result<NewRow> {
    let v = |c: i32| column(values, c);
    let id = match row::id(&v(col::ID)?)? {
        Some(id) => Some(id),
        None => row::id(&rowid)?,
    };
    Ok(NewRow {
        id,
        content: row::content(&v(col::CONTENT)?)?,
        namespace: row::namespace(&v(col::NAMESPACE)?)?,
        tags: row::tags(&v(col::TAGS)?)?,
        metadata: row::metadata(&v(col::METADATA)?)?,
        source: row::source(&v(col::SOURCE)?)?,
        importance: row::importance(&v(col::IMPORTANCE)?)?,
        created_at: row::timestamp(&v(col::CREATED_AT)?, "created_at")?,
        updated_at: row::timestamp(&v(col::UPDATED_AT)?, "updated_at")?,
        ttl_ms: row::ttl(&v(col::TTL)?)?,
        expires_at: row::timestamp(&v(col::EXPIRES_AT)?, "expires_at")?,
        embedding: row::embedding(&v(col::EMBEDDING)?, dim)?,
    })
}

/// The query xFilter's arguments describe under the plan `idx_num` ([`bit`]).
///
/// # Errors
/// [`Error::Invalid`] for two MATCH terms, a bad `k`/LIMIT, a missing `k` where one is
/// needed, a bad query vector, ranking JSON or `include_superseded`.
pub(super) fn query(tab: &MemoryTable, idx_num: i32, args: &Values<'_>) -> Result<Query> {
    let [
        knn,
        keyword,
        hybrid,
        k,
        ns,
        rowid,
        limit,
        offset,
        ranking,
        include_superseded,
        _as_of,
    ] = filter_args(idx_num, args)?;
    // `x MATCH NULL` matches nothing, as any comparison with NULL.
    if [knn, keyword, hybrid]
        .iter()
        .any(|m| matches!(m, Some(ValueRef::Null)))
    {
        return Ok(Query::Empty);
    }
    let Some(namespace) = namespace(tab, ns)? else {
        return Ok(Query::Empty);
    };
    // `k`, the rowid and LIMIT/OFFSET with SQLite's integer affinity: `k = '3'` is 3.
    let int = |v: Option<ValueRef<'_>>, what: &str| -> Result<Option<i64>> {
        v.map_or(Ok(None), |v| row::integer(&v, what, "an INTEGER"))
    };
    if matches!(k, Some(ValueRef::Null)) {
        return Err(Error::invalid(format!(
            "column k: expected an INTEGER in 1..={MAX_K}, got NULL (leave the k term out to \
             use LIMIT)"
        )));
    }
    let k = int(k, "column k")?;
    let limit = int(limit, "LIMIT")?;
    let offset = int(offset, "OFFSET")?.unwrap_or(0).max(0);
    let table = &tab.store.table;
    let raw_k = k;
    let rank = ranking_of(tab, ranking)?;
    let searching = knn.is_some() || keyword.is_some() || hybrid.is_some();
    if ranking.is_some() && !searching {
        return Err(Error::invalid(format!(
            "ranking: only meaningful with a search (embedding MATCH, content MATCH or \
             {table} MATCH)"
        )));
    }
    let include_superseded = flag(include_superseded)?;
    let Some((search, k)) = search_of(tab, [knn, keyword, hybrid], k, limit, offset)? else {
        if k.is_some() {
            return Err(Error::invalid(format!(
                "k: only meaningful with a search (embedding MATCH, content MATCH or \
                 {table} MATCH)"
            )));
        }
        return Ok(match (rowid, int(rowid, "column id")?) {
            (Some(_), None) => Query::Empty,
            (_, id) => Query::Scan {
                rowid: id,
                namespace,
            },
        });
    };
    // The hidden `k` column shows the k searched for (keyword search: the `k` given).
    let k_column = match search {
        Search::Keyword(_) => raw_k,
        _ => Some(k as i64),
    };
    Ok(Query::Search {
        search,
        k,
        k_column,
        namespace,
        ranking: rank,
        include_superseded,
        ids_only: idx_num & bit::IDS_ONLY != 0,
    })
}

/// The `as_of = ?` value of a plan (`None`: no as_of term): a snapshot name (TEXT; a TEXT
/// that is an integer and names no snapshot is that integer), a version, or a time in ms
/// since the Unix epoch ([`Target::from_int`]).
///
/// # Errors
/// [`Error::Invalid`] for NULL, a BLOB or a non-integral REAL.
pub(super) fn as_of(tab: &MemoryTable, idx_num: i32, args: &Values<'_>) -> Result<Option<Target>> {
    let vals = filter_args(idx_num, args)?;
    let Some(v) = vals[vals.len() - 1] else {
        return Ok(None);
    };
    target(&tab.store, "as_of", v).map(Some)
}

/// A snapshot name, version or time argument (`what`: its name, for errors).
///
/// # Errors
/// [`Error::Invalid`] for NULL, a BLOB, an empty text or a non-integral REAL.
pub(crate) fn target(store: &crate::store::Store, what: &str, v: ValueRef<'_>) -> Result<Target> {
    let expected = "a snapshot name (TEXT), a version (INTEGER) or a time in ms since the Unix \
                    epoch (INTEGER >= 10^12)";
    match v {
        ValueRef::Integer(i) => Ok(Target::from_int(i)),
        ValueRef::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e18 => Ok(Target::from_int(r as i64)),
        ValueRef::Text(t) => {
            let name = String::from_utf8_lossy(t).into_owned();
            if name.is_empty() {
                return Err(Error::invalid(format!(
                    "{what}: expected {expected}, got ''"
                )));
            }
            match name.trim().parse::<i64>() {
                Ok(i) if store.snapshot(&name)?.is_none() => Ok(Target::from_int(i)),
                _ => Ok(Target::Snapshot(name)),
            }
        }
        ValueRef::Real(r) => Err(Error::invalid(format!(
            "{what}: expected {expected}, got REAL {r}"
        ))),
        other => Err(Error::invalid(format!(
            "{what}: expected {expected}, got {}",
            row::type_name(&other)
        ))),
    }
}

/// xFilter's arguments by term, in [`bit::ARGS`] order (`None`: the term is absent).
///
/// # Errors
/// [`Error::Invalid`] for two MATCH terms ([`bit::CONFLICT`]).
fn filter_args<'a>(
    idx_num: i32,
    args: &'a Values<'a>,
) -> Result<[Option<ValueRef<'a>>; bit::ARGS.len()]> {
    if idx_num & bit::CONFLICT != 0 {
        return Err(Error::invalid(
            "memories: a query may have only one MATCH (embedding, content or the table \
             column); combine searches with a subquery",
        ));
    }
    let mut vals: [Option<ValueRef<'a>>; bit::ARGS.len()] = [None; bit::ARGS.len()];
    let mut next = 0;
    for (slot, b) in bit::ARGS.iter().enumerate() {
        if idx_num & b != 0 {
            vals[slot] = Some(arg(args, next)?);
            next += 1;
        }
    }
    Ok(vals)
}

/// The retriever and result count of a search: `None` when no MATCH term was given.
fn search_of(
    tab: &MemoryTable,
    matches: [Option<ValueRef<'_>>; 3],
    k: Option<i64>,
    limit: Option<i64>,
    offset: i64,
) -> Result<Option<(Search, usize)>> {
    let table = &tab.store.table;
    let count = |needed: bool| result_count(k, limit, offset, needed, table);
    Ok(Some(match matches {
        [Some(q), _, _] => {
            let k = count(true)?.unwrap_or(10);
            let v = query_vector(q, tab.store.opts.dim, table)?;
            vector::check(&v, Some(tab.store.opts.metric), "embedding MATCH")?;
            (Search::Knn(v), k)
        }
        [_, Some(q), _] => {
            let k = count(false)?.unwrap_or(usize::MAX);
            // A number is its text, as FTS5 itself reads `MATCH 8080`.
            let Some(text) = match_text(tab, q)? else {
                return Err(Error::invalid(
                    "content MATCH: expected an FTS5 query as TEXT, got BLOB",
                ));
            };
            (Search::Keyword(text), k)
        }
        [_, _, Some(q)] => {
            let k = count(true)?.unwrap_or(10);
            // Any text is accepted, and a number is searched as its text (TEXT affinity).
            let Some(text) = match_text(tab, q)? else {
                return Err(Error::invalid(format!(
                    "{table} MATCH: expected the search text as TEXT, got BLOB"
                )));
            };
            (Search::Hybrid(text), k)
        }
        _ => return Ok(None),
    }))
}

/// A MATCH value as text: TEXT as is, a number as SQLite renders it (`8080`, `1.5`);
/// `None` for a BLOB (NULL is handled before: it matches nothing).
fn match_text(tab: &MemoryTable, q: ValueRef<'_>) -> Result<Option<String>> {
    Ok(match q {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(tab.store.conn().query_row(
            "SELECT CAST(?1 AS TEXT)",
            [r],
            |row| row.get(0),
        )?),
        ValueRef::Blob(_) | ValueRef::Null => None,
    })
}

/// The `namespace = ?` value with TEXT affinity, as an ordinary TEXT column compares: a
/// number as SQLite renders it (REAL 1.0 is '1.0'). `Ok(None)`: the term matches nothing
/// (NULL, a BLOB); `Ok(Some(None))`: no namespace term.
fn namespace(tab: &MemoryTable, ns: Option<ValueRef<'_>>) -> Result<Option<Option<String>>> {
    Ok(match ns {
        None => Some(None),
        Some(ValueRef::Text(t)) => Some(Some(String::from_utf8_lossy(t).into_owned())),
        Some(ValueRef::Null | ValueRef::Blob(_)) => None,
        Some(ValueRef::Integer(i)) => Some(Some(i.to_string())),
        Some(ValueRef::Real(r)) => Some(Some(tab.store.conn().query_row(
            "SELECT CAST(?1 AS TEXT)",
            [r],
            |row| row.get(0),
        )?)),
    })
}

/// First SQLite release that passes LIMIT to xBestIndex in a query with a MATCH term
/// (measured with EXPLAIN QUERY PLAN: 3.40.1 does not, 3.41.0 and 3.54.1 do).
const LIMIT_WITH_MATCH: i64 = 3_041_000;

/// The number of results a search returns: `k`, else `LIMIT + OFFSET` (clamped to
/// 1..=[`MAX_K`]); `None` when neither is given and `needed` is false (keyword search:
/// every match).
///
/// # Errors
/// [`Error::Invalid`] for `k` outside 1..=[`MAX_K`], or no usable `k`/LIMIT when `needed`,
/// saying what this host's SQLite does with LIMIT.
fn result_count(
    k: Option<i64>,
    limit: Option<i64>,
    offset: i64,
    needed: bool,
    table: &str,
) -> Result<Option<usize>> {
    match (k, limit) {
        (Some(k), _) => search::check_k(k, "k").map(Some),
        (None, Some(l)) if l >= 0 => {
            search::check_k(l.saturating_add(offset).clamp(1, MAX_K), "LIMIT").map(Some)
        }
        _ if needed => {
            // From the version string: as an extension, the number that
            // `sqlite3_libversion_number()` reports is at least the 3.45.3 that rusqlite's
            // bindings expect (see `entry`).
            let host = crate::host_sqlite_version();
            let host_version = host
                .split('.')
                .map(|p| p.parse::<i64>().unwrap_or(0))
                .chain([0, 0])
                .take(3)
                .fold(0, |n, p| n * 1000 + p);
            let why = match limit {
                Some(l) => format!("LIMIT {l} sets no limit"),
                None if host_version < LIMIT_WITH_MATCH => format!(
                    "this query passed no LIMIT to the table, and SQLite {host} never passes \
                     LIMIT to a virtual table in a query with MATCH (3.41.0 and later do)"
                ),
                None => "this query passed no LIMIT to the table (SQLite passes it only when \
                         the query reads this table alone, without DISTINCT, GROUP BY or an \
                         aggregate, every WHERE term is the MATCH, k, namespace =, id = or \
                         ranking =, and any ORDER BY is on its columns)"
                    .to_string(),
            };
            Err(Error::invalid(format!(
                "{table}: a KNN or hybrid search needs k, as in `AND k = 10`, or a LIMIT; {why}"
            )))
        }
        _ => Ok(None),
    }
}

/// The query vector of `embedding MATCH ?`: a BLOB of `dim` float32 or a JSON array
/// ([`vector::from_sql`]); other values get a hint about searching by text.
fn query_vector(q: ValueRef<'_>, dim: usize, table: &str) -> Result<Vec<f32>> {
    let vector_like = match q {
        ValueRef::Blob(_) => true,
        ValueRef::Text(t) => t.first() == Some(&b'['),
        _ => false,
    };
    vector::from_sql(q, Some(dim), "embedding MATCH").map_err(|e| match e {
        Error::Invalid(msg) if !vector_like => Error::invalid(format!(
            "{msg}; to search by text use embedding MATCH embed('...') or {table} MATCH '...'"
        )),
        e => e,
    })
}

/// The table's ranking, with the query's `ranking = ?json` applied.
fn ranking_of(tab: &MemoryTable, ranking: Option<ValueRef<'_>>) -> Result<Ranking> {
    let rank = Ranking::from_options(&tab.store.opts);
    match ranking {
        None | Some(ValueRef::Null) => Ok(rank),
        Some(ValueRef::Text(t)) => rank.with_json(&String::from_utf8_lossy(t)),
        Some(other) => Err(Error::invalid(format!(
            "column ranking: expected a JSON object as TEXT, got {}",
            row::type_name(&other)
        ))),
    }
}

/// `include_superseded = ?`: NULL or absent is false, numbers are true unless 0.
fn flag(v: Option<ValueRef<'_>>) -> Result<bool> {
    match v {
        None | Some(ValueRef::Null) => Ok(false),
        Some(ValueRef::Integer(i)) => Ok(i != 0),
        Some(ValueRef::Real(r)) => Ok(r != 0.0),
        Some(other) => Err(Error::invalid(format!(
            "column include_superseded: expected 0 or 1, got {}",
            row::type_name(&other)
        ))),
    }
}
