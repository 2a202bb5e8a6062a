//! Context assembly and relations between memories, as SQL:
//!
//! * `subcog_context(table, query, budget_tokens [, options_json])` -> TEXT: the context
//!   block ([`crate::table::context`]);
//! * `subcog_context_items(table, query, budget_tokens [, options_json])`: table-valued,
//!   `(id, tokens, score, reason)` of the memories that context holds, best first;
//! * `subcog_link(table, src_id, dst_id, kind [, weight])` -> 1 when the link is new, 0
//!   when it existed (its weight is replaced);
//! * `subcog_unlink(table, src_id, dst_id [, kind])` -> how many links were deleted
//!   (every kind between the two when `kind` is not given);
//! * `subcog_links(table, id)`: table-valued, `(src, dst, kind, weight, created_at)` of
//!   every link from or to memory `id`.
//!
//! `table` is `name` or `schema.name`. The context runs the table's own hybrid search
//! (`<table> MATCH ? AND k = ?`) on the same connection, so it sees what the table sees,
//! this transaction's writes included (with the `as_of` option: `... AND as_of = ?`, and
//! rows, links and neighbours as of the same version); links live in `<table>_links` and
//! follow the table through transactions, DROP, RENAME and VACUUM like its other shadow
//! tables.

use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;

use rusqlite::functions::{Context as FnContext, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, ffi};

use crate::embedder;
use crate::error::{Error, Result, guard};
use crate::names::{quote, resolve};
use crate::row::{now_ms, type_name};
use crate::store::{KINDS, Store};
use crate::table::context::{self, AsOfArg, AsOfSource, Assembled, MAX_BUDGET, Options};
use crate::table::history;

/// Longest link kind accepted, in bytes.
const MAX_KIND: usize = 64;

/// Registers the three scalar functions and the two table-valued functions on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_function_v2` / `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let read = FunctionFlags::SQLITE_UTF8;
    let write = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    for n in [3, 4] {
        conn.create_scalar_function("subcog_context", n, read, |ctx| Ok(context_fn(ctx)?))?;
        conn.create_scalar_function("subcog_unlink", n, write, |ctx| Ok(unlink(ctx)?))?;
    }
    for n in [4, 5] {
        conn.create_scalar_function("subcog_link", n, write, |ctx| Ok(link(ctx)?))?;
    }
    const ITEMS: Module<Tvf<Items>> = Module::eponymous_only_module();
    const LINKS: Module<Tvf<Links>> = Module::eponymous_only_module();
    conn.create_module(c"subcog_context_items", &ITEMS, None)?;
    conn.create_module(c"subcog_links", &LINKS, None)?;
    Ok(())
}

/// The connection running a scalar function (not owned).
pub(super) fn connection(ctx: &FnContext<'_>) -> Result<Connection> {
    // SAFETY: the connection running this function; `from_handle` does not take ownership.
    Ok(unsafe {
        let c = ctx.get_connection()?;
        Connection::from_handle(c.handle())?
    })
}

/// `(schema, table)` of a `table` argument.
pub(super) fn table_arg(
    conn: &Connection,
    func: &str,
    v: ValueRef<'_>,
) -> Result<(String, String)> {
    match v {
        ValueRef::Text(t) => resolve(conn, &format!("{func}(table)"), &String::from_utf8_lossy(t)),
        other => Err(Error::invalid(format!(
            "{func}(table): expected the table name as TEXT, got {}",
            type_name(&other)
        ))),
    }
}

/// An INTEGER argument (a REAL with an integral value is accepted).
pub(super) fn int_arg(func: &str, what: &str, v: ValueRef<'_>) -> Result<i64> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e15 => Ok(r as i64),
        other => Err(Error::invalid(format!(
            "{func}({what}): expected an INTEGER, got {}",
            describe(&other)
        ))),
    }
}

/// A value for an error message: its type and, for short values, the value.
fn describe(v: &ValueRef<'_>) -> String {
    match v {
        ValueRef::Real(r) => format!("REAL {r}"),
        ValueRef::Text(t) if t.len() <= 40 => format!("TEXT '{}'", String::from_utf8_lossy(t)),
        other => type_name(other).to_string(),
    }
}

/// A TEXT argument, or `None` for NULL when `nullable`.
pub(super) fn text_arg(
    func: &str,
    what: &str,
    v: ValueRef<'_>,
    nullable: bool,
) -> Result<Option<String>> {
    match v {
        ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Null if nullable => Ok(None),
        other => Err(Error::invalid(format!(
            "{func}({what}): expected TEXT, got {}",
            type_name(&other)
        ))),
    }
}

/// Assembles the context of `args` = `(table, query, budget_tokens [, options])` on
/// `conn` for `func` (the SQL function's name, in errors).
///
/// # Errors
/// [`Error::Invalid`] for an unknown table, a query that is not non-empty TEXT, a budget
/// outside `0..=MAX_BUDGET`, bad options ([`Options::parse`]), an `as_of` the table's
/// history cannot resolve (history off, unknown snapshot, future or purged version); the
/// hybrid search's errors
/// (model missing, a table whose dimension is not the model's); SQLite errors.
fn assemble(conn: &Connection, func: &str, args: &[ValueRef<'_>]) -> Result<Assembled> {
    let get = |i: usize| args.get(i).copied().unwrap_or(ValueRef::Null);
    let (schema, table) = table_arg(conn, func, get(0))?;
    let query = text_arg(func, "query", get(1), false)?.unwrap_or_default();
    if query.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{func}(query): expected a non-empty question or topic, got '{query}'"
        )));
    }
    let budget = int_arg(func, "budget_tokens", get(2))?;
    if !(0..=MAX_BUDGET).contains(&budget) {
        return Err(Error::invalid(format!(
            "{func}(budget_tokens): expected an integer in 0..={MAX_BUDGET}, got {budget}"
        )));
    }
    let opts_text = text_arg(func, "options", get(3), true)?;
    let opts = Options::parse(func, opts_text.as_deref())?;
    let budget = budget as usize;
    if budget == 0 {
        return Ok(Assembled::default());
    }
    let pool = context::pool_size(budget);
    // SAFETY: the same connection, not owned (the Store only runs statements on it).
    let store = Store::connect(
        unsafe { Connection::from_handle(conn.handle())? },
        &schema,
        &table,
    )?;
    store.refuse_branch(func)?;
    // As of a version: the search runs the table's own as-of plan, and rows, links and
    // neighbours are read as of the same version, resolved the same way.
    let as_of = match &opts.as_of {
        None => None,
        Some(a) => {
            let value = match a {
                AsOfArg::Text(t) => Value::Text(t.clone()),
                AsOfArg::Int(i) => Value::Integer(*i),
            };
            let what = format!("{func}(options): as_of");
            let target = super::args::target(&store, &what, ValueRef::from(&value))?;
            let at = history::resolve(&store, &what, &target)?;
            Some((value, at))
        }
    };
    let mut sql = format!(
        "SELECT id, score FROM {}.{t} WHERE {t} MATCH ?1 AND k = ?2",
        quote(&schema),
        t = quote(&table)
    );
    let mut params: Vec<Value> = vec![Value::Text(query), Value::Integer(pool as i64)];
    if let Some(n) = &opts.namespace {
        params.push(Value::Text(n.clone()));
        sql.push_str(&format!(" AND namespace = ?{}", params.len()));
    }
    if let Some((value, _)) = &as_of {
        params.push(value.clone());
        sql.push_str(&format!(" AND as_of = ?{}", params.len()));
    }
    let mut st = conn.prepare_cached(&sql)?;
    let hits = st
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(st);
    let model = embedder::get()?;
    let count = |s: &str| model.count_tokens(s);
    match as_of {
        None => context::assemble(&store, &hits, budget, &opts, &count),
        Some((_, at)) => {
            let source = AsOfSource {
                undo: store.undo_to(at.version)?,
                store: &store,
                clock: at.clock,
            };
            context::assemble(&source, &hits, budget, &opts, &count)
        }
    }
}

/// `subcog_context(table, query, budget_tokens [, options])`.
fn context_fn(ctx: &FnContext<'_>) -> Result<String> {
    let conn = connection(ctx)?;
    let args: Vec<ValueRef<'_>> = (0..ctx.len()).map(|i| ctx.get_raw(i)).collect();
    Ok(assemble(&conn, "subcog_context", &args)?.text)
}

/// The two memory ids of a link, checked to exist and differ.
fn link_ends(ctx: &FnContext<'_>, func: &str, store: &Store) -> Result<(i64, i64)> {
    let src = int_arg(func, "src_id", ctx.get_raw(1))?;
    let dst = int_arg(func, "dst_id", ctx.get_raw(2))?;
    for (what, id) in [("src_id", src), ("dst_id", dst)] {
        if !store.exists(id)? {
            return Err(Error::invalid(format!(
                "{func}({what}): no memory with id {id} in {}",
                store.table
            )));
        }
    }
    if src == dst {
        return Err(Error::invalid(format!(
            "{func}: src_id and dst_id are both {src}; a memory cannot be linked to itself"
        )));
    }
    Ok((src, dst))
}

/// A link kind: non-empty TEXT of at most [`MAX_KIND`] bytes, without control characters.
fn kind_arg(func: &str, v: ValueRef<'_>) -> Result<String> {
    let kind = text_arg(func, "kind", v, false)?.unwrap_or_default();
    if kind.trim().is_empty() || kind.len() > MAX_KIND || kind.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{func}(kind): expected a non-empty name of at most {MAX_KIND} bytes without control \
             characters ({} or your own), got '{}'",
            KINDS.join(", "),
            kind.chars().take(80).collect::<String>()
        )));
    }
    Ok(kind)
}

/// `subcog_link(table, src_id, dst_id, kind [, weight])`.
fn link(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_link";
    let conn = connection(ctx)?;
    let (schema, table) = table_arg(&conn, F, ctx.get_raw(0))?;
    let store = Store::connect(connection(ctx)?, &schema, &table)?;
    store.refuse_branch(F)?;
    let (src, dst) = link_ends(ctx, F, &store)?;
    let kind = kind_arg(F, ctx.get_raw(3))?;
    let weight = if ctx.len() > 4 {
        match ctx.get_raw(4) {
            ValueRef::Integer(i) => i as f64,
            ValueRef::Real(r) if r.is_finite() => r,
            other => {
                return Err(Error::invalid(format!(
                    "{F}(weight): expected a finite number, got {}",
                    describe(&other)
                )));
            }
        }
    } else {
        1.0
    };
    let existed = store
        .links_of(&[src])?
        .iter()
        .any(|l| l.src == src && l.dst == dst && l.kind == kind);
    store.add_link(src, dst, &kind, weight, now_ms())?;
    Ok(i64::from(!existed))
}

/// `subcog_unlink(table, src_id, dst_id [, kind])`.
fn unlink(ctx: &FnContext<'_>) -> Result<i64> {
    const F: &str = "subcog_unlink";
    let conn = connection(ctx)?;
    let (schema, table) = table_arg(&conn, F, ctx.get_raw(0))?;
    let store = Store::connect(connection(ctx)?, &schema, &table)?;
    store.refuse_branch(F)?;
    let src = int_arg(F, "src_id", ctx.get_raw(1))?;
    let dst = int_arg(F, "dst_id", ctx.get_raw(2))?;
    let kind = if ctx.len() > 3 {
        Some(kind_arg(F, ctx.get_raw(3))?)
    } else {
        None
    };
    Ok(store.remove_link(src, dst, kind.as_deref())? as i64)
}

/// One table-valued function: its declared columns (the hidden argument columns last),
/// how many arguments it takes and how many of them are required (the rest may be
/// omitted), and the rows of one call.
pub(super) trait Spec {
    /// `CREATE TABLE x(...)`: the result columns, then one HIDDEN column per argument.
    const DECL: &'static CStr;
    /// The SQL name, for errors.
    const NAME: &'static str;
    /// The argument names, in order, for errors.
    const ARGS: &'static [&'static str];
    /// Arguments that must be given (the first ones).
    const REQUIRED: usize;
    /// Result columns (the first hidden column's index).
    const COLUMNS: c_int;
    /// The rows for the arguments given (`None`: omitted).
    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>>;
}

/// `subcog_context_items`: the memories of the context, best first.
struct Items;

impl Spec for Items {
    const DECL: &'static CStr =
        c"CREATE TABLE x(id INTEGER, tokens INTEGER, score REAL, reason TEXT, \
         table_name HIDDEN, query HIDDEN, budget_tokens HIDDEN, options HIDDEN)";
    const NAME: &'static str = "subcog_context_items";
    const ARGS: &'static [&'static str] = &["table_name", "query", "budget_tokens", "options"];
    const REQUIRED: usize = 3;
    const COLUMNS: c_int = 4;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let vals: Vec<ValueRef<'_>> = args.iter().map(|a| a.unwrap_or(ValueRef::Null)).collect();
        let a = assemble(conn, Self::NAME, &vals)?;
        Ok(a.items
            .into_iter()
            .map(|it| {
                let mut reason = it.reason.to_string();
                if !it.contradicts.is_empty() {
                    let c: Vec<String> = it.contradicts.iter().map(|c| format!("#{c}")).collect();
                    reason.push_str(&format!(", contradicts {}", c.join(", ")));
                }
                vec![
                    Value::Integer(it.id),
                    Value::Integer(it.tokens as i64),
                    Value::Real(it.score),
                    Value::Text(reason),
                ]
            })
            .collect())
    }
}

/// `subcog_links`: every link from or to one memory.
struct Links;

impl Spec for Links {
    const DECL: &'static CStr =
        c"CREATE TABLE x(src INTEGER, dst INTEGER, kind TEXT, weight REAL, \
         created_at INTEGER, table_name HIDDEN, id HIDDEN)";
    const NAME: &'static str = "subcog_links";
    const ARGS: &'static [&'static str] = &["table_name", "id"];
    const REQUIRED: usize = 2;
    const COLUMNS: c_int = 5;

    fn rows(conn: &Connection, args: &[Option<ValueRef<'_>>]) -> Result<Vec<Vec<Value>>> {
        let get = |i: usize| args.get(i).copied().flatten().unwrap_or(ValueRef::Null);
        let (schema, table) = table_arg(conn, Self::NAME, get(0))?;
        let id = int_arg(Self::NAME, "id", get(1))?;
        // SAFETY: the same connection, not owned.
        let store = Store::connect(
            unsafe { Connection::from_handle(conn.handle())? },
            &schema,
            &table,
        )?;
        store.refuse_branch(Self::NAME)?;
        Ok(store
            .links_of(&[id])?
            .into_iter()
            .map(|l| {
                vec![
                    Value::Integer(l.src),
                    Value::Integer(l.dst),
                    Value::Text(l.kind),
                    Value::Real(l.weight),
                    Value::Integer(l.created_at),
                ]
            })
            .collect())
    }
}

/// An eponymous table-valued function described by `S`, on one connection.
#[repr(C)]
pub(super) struct Tvf<S> {
    base: ffi::sqlite3_vtab,
    conn: Connection,
    spec: PhantomData<S>,
}

/// xBestIndex: the argument columns given by `=` go to `argv` in column order; `idxNum`
/// is the bit set of those given. A plan without the required ones is possible but
/// costly (xFilter then says which argument is missing).
fn plan<S: Spec>(info: &mut IndexInfo) -> bool {
    let n = S::ARGS.len();
    let mut slots: Vec<Option<usize>> = vec![None; n];
    for (i, c) in info.constraints().enumerate() {
        if c.operator() != IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ {
            continue;
        }
        let col = c.column() - S::COLUMNS;
        if col < 0 || col as usize >= n {
            continue;
        }
        if !c.is_usable() {
            return false;
        }
        slots[col as usize] = Some(i);
    }
    let mut argv = 0;
    let mut mask = 0;
    for (bit, s) in slots.iter().enumerate() {
        if let Some(i) = s {
            argv += 1;
            let mut u = info.constraint_usage(*i);
            u.set_argv_index(argv);
            u.set_omit(true);
            mask |= 1 << bit;
        }
    }
    let required = (1 << S::REQUIRED) - 1;
    info.set_idx_num(mask);
    info.set_estimated_cost(if mask & required == required {
        10.0
    } else {
        1e12
    });
    true
}

// SAFETY: `Tvf` is `#[repr(C)]` with `sqlite3_vtab` first, as rusqlite's `VTab` requires.
unsafe impl<'vtab, S: Spec + 'vtab> VTab<'vtab> for Tvf<S> {
    type Aux = ();
    type Cursor = TvfCursor<'vtab, S>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        _schema: &[u8],
        _table: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        guard(|| {
            // SAFETY: the handle is the connection creating this table; not owned.
            let conn = unsafe { Connection::from_handle(db.handle()) }?;
            Ok((
                Cow::Borrowed(S::DECL),
                Tvf {
                    base: ffi::sqlite3_vtab::default(),
                    conn,
                    spec: PhantomData,
                },
            ))
        })
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        guard(|| Ok(plan::<S>(info)))
    }

    fn open(&'vtab mut self) -> rusqlite::Result<TvfCursor<'vtab, S>> {
        guard(|| {
            Ok(TvfCursor {
                base: ffi::sqlite3_vtab_cursor::default(),
                rows: Vec::new(),
                pos: 0,
                phantom: PhantomData,
            })
        })
    }
}

/// Cursor over the rows of one call.
#[repr(C)]
pub(super) struct TvfCursor<'vtab, S> {
    base: ffi::sqlite3_vtab_cursor,
    rows: Vec<Vec<Value>>,
    pos: usize,
    phantom: PhantomData<&'vtab Tvf<S>>,
}

impl<S: Spec> TvfCursor<'_, S> {
    fn run(&self, idx_num: c_int, filters: &Filters<'_>) -> Result<Vec<Vec<Value>>> {
        let mut given = filters.iter();
        let mut args: Vec<Option<ValueRef<'_>>> = Vec::with_capacity(S::ARGS.len());
        for (bit, name) in S::ARGS.iter().enumerate() {
            if idx_num & (1 << bit) != 0 {
                args.push(Some(given.next().unwrap_or(ValueRef::Null)));
            } else if bit < S::REQUIRED {
                return Err(Error::invalid(format!(
                    "{}({}): the argument {name} is required",
                    S::NAME,
                    S::ARGS[..S::REQUIRED].join(", ")
                )));
            } else {
                args.push(None);
            }
        }
        // SAFETY: SQLite sets pVtab to the table that opened this cursor.
        let conn = unsafe { &(*(self.base.pVtab as *const Tvf<S>)).conn };
        S::rows(conn, &args)
    }
}

// SAFETY: `TvfCursor` is `#[repr(C)]` with `sqlite3_vtab_cursor` first.
unsafe impl<S: Spec> VTabCursor for TvfCursor<'_, S> {
    fn filter(
        &mut self,
        idx_num: c_int,
        _idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        guard(|| {
            self.rows = self.run(idx_num, args)?;
            self.pos = 0;
            Ok(())
        })
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        guard(|| {
            self.pos += 1;
            Ok(())
        })
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        guard(|| {
            let v = self
                .rows
                .get(self.pos)
                .and_then(|r| r.get(i as usize))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(ctx.set_result(&v)?)
        })
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        guard(|| Ok(self.pos as i64))
    }
}
