//! SQL names: identifier quoting, and the `memories` table a SQL function's `table`
//! argument names.

/// `s` as an SQL identifier in double quotes (embedded quotes doubled).
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `(schema, table)` of a table name as SQL functions take it: `name` or `schema.name`
/// (schema `main` when none is given).
pub(crate) fn split_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => ("main".to_string(), name.to_string()),
    }
}
