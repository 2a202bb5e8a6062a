//! The loadable-extension entry point, `sqlite3_subcog_init`, and host-version bridging.
//!
//! rusqlite's extension bindings are generated for SQLite 3.45.3: they read every field
//! of the host's `sqlite3_api_routines` table as laid out in 3.45.3 and refuse a host
//! whose `sqlite3_libversion_number()` is lower. Debian 12 and Python ship 3.40.1. So the
//! entry point copies the host's table into a zeroed table of the 3.45.3 layout, copying
//! only the fields the host's version has (newer functions stay NULL and are never
//! called by subcog), and reports at least 3.45.3 through the copy's
//! `libversion_number` so the check passes. `sqlite_version()` in SQL and
//! [`crate::host_sqlite_version`] still report the host's real version.
//! Minimum host: SQLite 3.37.0 (`sqlite3_autovacuum_pages`, the last field checked).

use std::ffi::{CString, c_char, c_int};
use std::mem::offset_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, ffi};

use ffi::sqlite3_api_routines as Api;

/// Oldest host SQLite this extension loads into.
pub const MIN_HOST_VERSION: c_int = 3_037_000;

static REAL_LIBVERSION: AtomicUsize = AtomicUsize::new(0);
/// Leaked API-table copies, keyed by the host table's address (one per host library).
static COPIES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The host's real `sqlite3_libversion_number()`, when loaded as an extension.
pub fn real_version_number() -> Option<c_int> {
    let f = REAL_LIBVERSION.load(Ordering::Acquire);
    if f == 0 {
        return None;
    }
    // SAFETY: stored from the host's own table; a plain `int (*)(void)`.
    let f: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(f) };
    // SAFETY: the host's `sqlite3_libversion_number` takes nothing and has no
    // preconditions.
    Some(unsafe { f() })
}

/// `sqlite3_libversion_number` as rusqlite's bindings see it: at least the 3.45.3 they
/// were generated for (the host's own number is kept in [`REAL_LIBVERSION`]).
unsafe extern "C" fn libversion_shim() -> c_int {
    real_version_number()
        .unwrap_or(0)
        .max(ffi::SQLITE_VERSION_NUMBER)
}

/// Bytes of the 3.45.3 table that a host of `version` fills in.
fn known_prefix(version: c_int) -> Option<usize> {
    Some(match version {
        v if v >= 3_044_000 => size_of::<Api>(),
        v if v >= 3_043_000 => offset_of!(Api, get_clientdata),
        v if v >= 3_041_000 => offset_of!(Api, stmt_explain),
        v if v >= 3_040_000 => offset_of!(Api, is_interrupted),
        v if v >= 3_039_000 => offset_of!(Api, value_encoding),
        v if v >= 3_038_000 => offset_of!(Api, deserialize),
        v if v >= MIN_HOST_VERSION => offset_of!(Api, error_offset),
        _ => return None,
    })
}

/// Builds (once per host table) the bridged copy of the host's API table.
///
/// # Safety
/// `p_api` is SQLite's non-null API table.
unsafe fn bridged(p_api: *const Api) -> Result<*mut Api, String> {
    // SAFETY: the caller passes SQLite's non-null API table, valid for the process.
    let libversion = unsafe { (*p_api).libversion_number }
        .ok_or("the host's sqlite3_api_routines has no libversion_number")?;
    // SAFETY: `sqlite3_libversion_number` has no preconditions.
    let version = unsafe { libversion() };
    let prefix = known_prefix(version).ok_or_else(|| {
        format!(
            "subcog needs SQLite >= 3.37.0, but the host is {}.{}.{}",
            version / 1_000_000,
            version / 1000 % 1000,
            version % 1000
        )
    })?;
    REAL_LIBVERSION.store(libversion as usize, Ordering::Release);
    let mut copies = COPIES.lock().map_err(|_| "lock poisoned".to_string())?;
    if let Some(&(_, copy)) = copies.iter().find(|(src, _)| *src == p_api as usize) {
        return Ok(copy as *mut Api);
    }
    // SAFETY: Api is a struct of Option<fn> fields: all-zero is all None.
    let mut copy: Box<Api> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: the host's table holds at least `prefix` bytes (the fields of its version,
    // `known_prefix`), the copy is a fresh allocation of `size_of::<Api>() >= prefix`
    // bytes, and the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            p_api as *const u8,
            (&mut *copy as *mut Api) as *mut u8,
            prefix,
        );
    }
    copy.libversion_number = Some(libversion_shim);
    let ptr = Box::into_raw(copy);
    copies.push((p_api as usize, ptr as usize));
    Ok(ptr)
}

/// Writes `msg` into SQLite's error-message slot, allocated with the host's
/// `sqlite3_mprintf`.
///
/// # Safety
/// `p_api` is null or SQLite's API table; `pz_err_msg` is null or SQLite's slot.
unsafe fn set_error(p_api: *const Api, pz_err_msg: *mut *mut c_char, msg: &str) {
    if pz_err_msg.is_null() || p_api.is_null() {
        return;
    }
    // SAFETY: `p_api` is SQLite's non-null API table (checked above).
    let Some(mprintf) = (unsafe { (*p_api).mprintf }) else {
        return;
    };
    let Ok(msg) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: sqlite3_mprintf("%s", msg) allocates with sqlite3_malloc as SQLite expects.
    unsafe { *pz_err_msg = mprintf(c"%s".as_ptr(), msg.as_ptr()) };
}

fn init(conn: Connection) -> rusqlite::Result<bool> {
    crate::register(&conn)?;
    // Stay loaded after this connection closes: the ONNX session and its library are
    // process-wide.
    Ok(true)
}

/// Entry point called by SQLite's `load_extension('.../libsubcog')`.
///
/// # Safety
/// Called by SQLite with a valid connection, error-message slot and API table.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_subcog_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut Api,
) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if p_api.is_null() {
            return ffi::SQLITE_ERROR;
        }
        // SAFETY: SQLite passes its non-null API table (checked above), valid for the
        // process.
        match unsafe { bridged(p_api) } {
            // SAFETY: `db` and `pz_err_msg` are SQLite's for this load, `api` the bridged
            // table that outlives the process (leaked on purpose).
            Ok(api) => unsafe { Connection::extension_init2(db, pz_err_msg, api, init) },
            Err(msg) => {
                // SAFETY: as above; `set_error` checks both pointers for null.
                unsafe { set_error(p_api, pz_err_msg, &msg) };
                ffi::SQLITE_ERROR
            }
        }
    }));
    r.unwrap_or(ffi::SQLITE_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_grow_with_version() {
        assert_eq!(known_prefix(3_036_000), None);
        let a = known_prefix(3_037_000).unwrap_or(0);
        let b = known_prefix(3_040_001).unwrap_or(0);
        let c = known_prefix(3_045_003).unwrap_or(0);
        assert!(a < b && b < c && c == size_of::<Api>());
    }
}
