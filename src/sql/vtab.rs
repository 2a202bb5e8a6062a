//! The `memories` virtual table's trait methods: xCreate/xConnect, xBestIndex, xOpen,
//! xUpdate, the transaction methods, xRename and xShadowName. A thin adapter: each
//! decodes its SQL values ([`super::args`]) and calls the table's logic
//! ([`crate::table::MemoryTable`]); every callback runs inside [`guard`]. The cursor is in
//! [`super::cursor`], planning in [`super::planner`].

use std::borrow::Cow;
use std::ffi::{CStr, CString, c_int};

use rusqlite::types::ValueRef;
use rusqlite::vtab::{
    ConflictMode, CreateVTab, IndexConstraintOp, IndexInfo, Inserts, Module, TransactionVTab,
    UpdateVTab, Updates, VTab, VTabConnection, VTabKind,
};
use rusqlite::{Connection, ffi};

use super::args::{self, arg, column};
use super::cursor::MemCursor;
use super::planner::{self, Op, Term};
use crate::error::{Error, Result, guard};
use crate::row::{self, col};
use crate::search::rank::Ranking;
use crate::table::MemoryTable;
use crate::table::commands;
use crate::table::write::{Change, OnConflict};

/// Name of the module in `CREATE VIRTUAL TABLE ... USING memories(...)`.
pub(crate) const MODULE_NAME: &CStr = c"memories";

/// Registers the `memories` module on `conn`.
///
/// # Errors
/// SQLite errors from `sqlite3_create_module_v2`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<MemoriesTab> = module();
    conn.create_module(MODULE_NAME, &MODULE, None)
}

/// rusqlite's update module (with xBegin/xSync/xCommit/xRollback: xSync embeds what
/// awaits embedding) plus xRename and xShadowName (rusqlite leaves both NULL and
/// declares iVersion 1). `Module` is `#[repr(transparent)]` over `sqlite3_module`, so the
/// transmutes only change the view. iVersion 3 makes SQLite consult xShadowName; the
/// version-2 savepoint methods stay NULL, which SQLite allows: all state is in shadow
/// tables that the journal already covers.
const fn module() -> Module<'static, MemoriesTab> {
    let base: Module<MemoriesTab> = Module::update_module_with_tx();
    // SAFETY: same layout (repr(transparent)); we only fill in NULL callbacks.
    let mut raw: ffi::sqlite3_module = unsafe { std::mem::transmute(base) };
    raw.iVersion = 3;
    raw.xRename = Some(x_rename);
    raw.xShadowName = Some(x_shadow_name);
    // SAFETY: back to the same repr(transparent) type; transmute checks the sizes at
    // compile time, so a rusqlite whose Module is laid out otherwise does not build.
    unsafe { std::mem::transmute(raw) }
}

/// xShadowName: which `<table>_<suffix>` tables are ours. In defensive mode
/// (SQLITE_DBCONFIG_DEFENSIVE) SQLite then refuses ordinary SQL writes to them, while the
/// table's own methods keep writing.
unsafe extern "C" fn x_shadow_name(suffix: *const std::ffi::c_char) -> c_int {
    if suffix.is_null() {
        return 0;
    }
    // SAFETY: SQLite passes a NUL-terminated suffix.
    let suffix = unsafe { CStr::from_ptr(suffix) }.to_bytes();
    c_int::from(
        crate::store::SHADOW_SUFFIXES
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(suffix)),
    )
}

/// xRename: ALTER TABLE ... RENAME TO renames the shadow tables too.
unsafe extern "C" fn x_rename(vtab: *mut ffi::sqlite3_vtab, new: *const std::ffi::c_char) -> c_int {
    if vtab.is_null() || new.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // SAFETY: SQLite passes the table it created through xCreate/xConnect (a MemoriesTab)
    // and a NUL-terminated new name.
    let (tab, new) = unsafe { (&mut *(vtab as *mut MemoriesTab), CStr::from_ptr(new)) };
    let new = new.to_string_lossy().into_owned();
    match guard(|| tab.table.rename(&new)) {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) => {
            if let Ok(msg) = CString::new(e.to_string().replace('\0', " ")) {
                // SAFETY: zErrMsg is owned by SQLite and freed with sqlite3_free.
                unsafe {
                    ffi::sqlite3_free((*vtab).zErrMsg.cast());
                    let bytes = msg.as_bytes_with_nul();
                    let p = ffi::sqlite3_malloc64(bytes.len() as u64).cast::<u8>();
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                    }
                    (*vtab).zErrMsg = p.cast();
                }
            }
            ffi::SQLITE_ERROR
        }
    }
}

/// One `memories` table on one connection: SQLite's base struct, then the table.
#[repr(C)]
pub(crate) struct MemoriesTab {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab,
    pub(super) table: MemoryTable,
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::invalid(format!("{what} is not UTF-8")))
}

impl MemoriesTab {
    fn open_table(
        db: &mut VTabConnection,
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
        create: bool,
    ) -> Result<(Cow<'static, CStr>, Self)> {
        let schema = utf8(schema, "schema name")?;
        let name = utf8(table, "table name")?;
        let args: Vec<String> = args
            .iter()
            .map(|a| utf8(a, "option"))
            .collect::<Result<_>>()?;
        // SAFETY: the handle is the connection running this CREATE/connect; `from_handle`
        // does not take ownership, so dropping the Connection leaves it open.
        let conn = unsafe { Connection::from_handle(db.handle()) }?;
        let table = if create {
            MemoryTable::create(conn, &schema, &name, &args)?
        } else {
            MemoryTable::connect(conn, &schema, &name)?
        };
        let sql = CString::new(row::declare_sql(&name))
            .map_err(|_| Error::invalid("table name contains a NUL byte"))?;
        Ok((
            Cow::Owned(sql),
            MemoriesTab {
                base: ffi::sqlite3_vtab::default(),
                table,
            },
        ))
    }

    /// xUpdate INSERT: a command (the table column set) or one memory.
    fn insert_row(&mut self, args: &Inserts<'_>) -> Result<i64> {
        let command = column(args, col::TABLE)?;
        match command {
            ValueRef::Null => {}
            ValueRef::Text(t) => {
                self.table.command(&String::from_utf8_lossy(t))?;
                return Ok(0);
            }
            other => {
                return Err(commands::unknown(
                    &self.table.store.table,
                    &format!("{other:?}"),
                ));
            }
        }
        let new = args::new_row(args, arg(args, 1)?, self.table.store.opts.dim)?;
        // SAFETY: called inside xUpdate on this table's connection.
        let mode = unsafe { args.on_conflict(self.table.store.conn().handle()) };
        let on_conflict = match mode {
            ConflictMode::Replace => OnConflict::Replace,
            ConflictMode::Ignore => OnConflict::Ignore,
            _ => OnConflict::Abort,
        };
        self.table.insert(new, on_conflict)
    }

    /// xUpdate UPDATE: the row `argv[0]`, now `argv[1]` / the `id` column.
    fn update_row(&mut self, args: &Updates<'_>) -> Result<()> {
        let old_id = row::id(&arg(args, 0)?)?.unwrap_or(0);
        let new_id = row::id(&arg(args, 1)?)?.unwrap_or(old_id);
        let col_id = row::id(&column(args, col::ID)?)?.unwrap_or(new_id);
        let new_id = if col_id != old_id { col_id } else { new_id };
        let superseded_by = row::id(&column(args, col::SUPERSEDED_BY)?)?;
        let embedding_unchanged = args.no_change((col::EMBEDDING + 2) as usize);
        let new = args::new_row(args, ValueRef::Null, self.table.store.opts.dim)?;
        self.table.update(Change {
            old_id,
            new_id,
            row: new,
            superseded_by,
            embedding_unchanged,
        })
    }
}

// SAFETY: `MemoriesTab` is `#[repr(C)]` with `sqlite3_vtab` first, as rusqlite's `VTab`
// requires.
unsafe impl<'vtab> VTab<'vtab> for MemoriesTab {
    type Aux = ();
    type Cursor = MemCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        guard(|| Self::open_table(db, schema, table, args, false))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        guard(|| {
            let terms: Vec<Term> = info
                .constraints()
                .map(|c| Term {
                    column: c.column(),
                    op: match c.operator() {
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ => Op::Eq,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_MATCH => Op::Match,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LIMIT => Op::Limit,
                        IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_OFFSET => Op::Offset,
                        _ => Op::Other,
                    },
                    usable: c.is_usable(),
                })
                .collect();
            let order_by: Vec<(i32, bool)> = info
                .order_bys()
                .map(|o| (o.column(), o.is_order_by_desc()))
                .collect();
            let reranks = Ranking::from_options(&self.table.store.opts).active();
            let Some(d) = planner::plan(&terms, &order_by, reranks) else {
                return Ok(false);
            };
            for (i, u) in d.usage.iter().enumerate() {
                if let Some((argv, omit)) = u {
                    let mut usage = info.constraint_usage(i);
                    usage.set_argv_index(*argv);
                    usage.set_omit(*omit);
                }
            }
            let mut idx_num = d.idx_num;
            if planner::ids_only(info.col_used()) {
                idx_num |= planner::bit::IDS_ONLY;
            }
            info.set_idx_num(idx_num);
            info.set_idx_str(&d.idx_str);
            info.set_order_by_consumed(d.order_by_consumed);
            info.set_estimated_cost(d.cost);
            info.set_estimated_rows(d.rows);
            Ok(true)
        })
    }

    fn open(&'vtab mut self) -> rusqlite::Result<MemCursor<'vtab>> {
        guard(|| Ok(MemCursor::new()))
    }
}

impl CreateVTab<'_> for MemoriesTab {
    const KIND: VTabKind = VTabKind::Default;

    fn create(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        schema: &[u8],
        table: &[u8],
        args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        guard(|| Self::open_table(db, schema, table, args, true))
    }

    fn destroy(&self) -> rusqlite::Result<()> {
        guard(|| self.table.destroy())
    }
}

impl UpdateVTab<'_> for MemoriesTab {
    fn delete(&mut self, arg: ValueRef<'_>) -> rusqlite::Result<()> {
        guard(|| match row::id(&arg)? {
            Some(id) => self.table.delete(id),
            None => Ok(()),
        })
    }

    fn insert(&mut self, args: &Inserts<'_>) -> rusqlite::Result<i64> {
        guard(|| self.insert_row(args))
    }

    fn update(&mut self, args: &Updates<'_>) -> rusqlite::Result<()> {
        guard(|| self.update_row(args))
    }
}

impl TransactionVTab<'_> for MemoriesTab {
    /// xSync, at COMMIT ([`MemoryTable::sync`]).
    fn sync(&mut self) -> rusqlite::Result<()> {
        guard(|| self.table.sync())
    }

    /// xRollback ([`MemoryTable::rollback`]).
    fn rollback(&mut self) -> rusqlite::Result<()> {
        guard(|| {
            self.table.rollback();
            Ok(())
        })
    }
}
