//! `vec_search(table_name, vector, k)`: a table-valued function returning `(id, distance)`,
//! the KNN of any `memories` table by name.
//!
//! It validates the name against the schema and runs the table's own KNN plan
//! (`embedding MATCH ? AND k = ?`) on the same connection, so it sees exactly what the
//! table sees, including uncommitted writes of the current transaction.

use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;

use rusqlite::types::ValueRef;
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, ffi};

use crate::error::{Error, Result, guard};

const COL_TABLE: c_int = 2;
const COL_VECTOR: c_int = 3;
const COL_K: c_int = 4;

/// Registers `vec_search` on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<VecSearchTab> = Module::eponymous_only_module();
    conn.create_module(c"vec_search", &MODULE, None)
}

/// The eponymous `vec_search` table on one connection.
#[repr(C)]
pub struct VecSearchTab {
    base: ffi::sqlite3_vtab,
    conn: Connection,
}

impl VecSearchTab {
    /// xBestIndex: the three arguments as `argv[1..=3]`; `idxNum` is the bit set of those
    /// given (7: all three), which xFilter requires.
    fn plan(info: &mut IndexInfo) -> bool {
        let mut slots = [None; 3];

        for (i, c) in info.constraints().enumerate() {
            if c.operator() != IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ {
                continue;
            }
            let slot = match c.column() {
                COL_TABLE => 0,
                COL_VECTOR => 1,
                COL_K => 2,
                _ => continue,
            };
            if !c.is_usable() {
                return false;
            }
            slots[slot] = Some(i);
        }
        let mut n = 0;
        for s in slots.iter().flatten() {
            n += 1;
            let mut u = info.constraint_usage(*s);
            u.set_argv_index(n);
            u.set_omit(true);
        }
        let mask = slots
            .iter()
            .enumerate()
            .fold(0, |m, (i, s)| if s.is_some() { m | (1 << i) } else { m });
        info.set_idx_num(mask);
        info.set_estimated_cost(if mask == 7 { 10.0 } else { 1e12 });
        true
    }
}

// SAFETY: `VecSearchTab` is `#[repr(C)]` with `sqlite3_vtab` first, as rusqlite's `VTab`
// requires.
unsafe impl<'vtab> VTab<'vtab> for VecSearchTab {
    type Aux = ();
    type Cursor = VecSearchCursor<'vtab>;

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
                Cow::Borrowed(c"CREATE TABLE x(id INTEGER, distance REAL, table_name HIDDEN, vector HIDDEN, k HIDDEN)"),
                VecSearchTab { base: ffi::sqlite3_vtab::default(), conn },
            ))
        })
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        guard(|| Ok(Self::plan(info)))
    }
    fn open(&'vtab mut self) -> rusqlite::Result<VecSearchCursor<'vtab>> {
        guard(|| {
            Ok(VecSearchCursor {
                base: ffi::sqlite3_vtab_cursor::default(),
                rows: Vec::new(),
                pos: 0,
                phantom: PhantomData,
            })
        })
    }
}

/// Cursor over the `(id, distance)` rows of one call.
#[repr(C)]
pub struct VecSearchCursor<'vtab> {
    base: ffi::sqlite3_vtab_cursor,
    rows: Vec<(i64, f64)>,
    pos: usize,
    phantom: PhantomData<&'vtab VecSearchTab>,
}

impl VecSearchCursor<'_> {
    fn run(&self, idx_num: c_int, args: &Filters<'_>) -> Result<Vec<(i64, f64)>> {
        if idx_num != 7 {
            return Err(Error::invalid(
                "vec_search(table_name, vector, k): all three arguments are required",
            ));
        }
        let table = match args.iter().nth(0).unwrap_or(ValueRef::Null) {
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => return Err(Error::invalid("vec_search(table_name): expected TEXT")),
        };
        // SAFETY: SQLite sets pVtab to the table that opened this cursor.
        let conn = unsafe { &(*(self.base.pVtab as *const VecSearchTab)).conn };
        let (schema, name) = crate::names::resolve(conn, "vec_search(table_name)", &table)
            .map_err(|_| {
                Error::invalid(format!(
                    "vec_search(table_name): no memories table named '{table}'"
                ))
            })?;
        let q = crate::names::quote;
        let vector = args.iter().nth(1).unwrap_or(ValueRef::Null);
        let k = args.iter().nth(2).unwrap_or(ValueRef::Null);
        let sql = format!(
            "SELECT id, distance FROM {}.{} WHERE embedding MATCH ?1 AND k = ?2",
            q(&schema),
            q(&name)
        );
        let mut st = conn.prepare(&sql)?;
        let rows = st
            .query_map(rusqlite::params![owned(vector), owned(k)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

fn owned(v: ValueRef<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

// SAFETY: `VecSearchCursor` is `#[repr(C)]` with `sqlite3_vtab_cursor` first.
unsafe impl VTabCursor for VecSearchCursor<'_> {
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
            let Some(&(id, d)) = self.rows.get(self.pos) else {
                return Ok(());
            };
            Ok(match i {
                0 => ctx.set_result(id),
                1 => ctx.set_result(d),
                _ => ctx.set_result(rusqlite::types::Null),
            }?)
        })
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        guard(|| Ok(self.rows.get(self.pos).map_or(0, |r| r.0)))
    }
}
