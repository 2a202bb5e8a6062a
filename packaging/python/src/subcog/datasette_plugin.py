"""Datasette plugin (entry point ``datasette``), active whenever this package is installed
next to Datasette, so ``datasette memory.db`` serves hybrid searches with no flags:

* ``prepare_connection``: loads the extension into every connection Datasette opens;
* ``get_metadata``: marks the shadow tables of every virtual table (``mem_content``,
  ``mem_vectors``, ... and FTS5's) hidden, as SQLite itself reports them
  (``pragma_table_list`` type ``shadow``, which needs the extension loaded);
* ``startup``: when a database holds a ``memories`` table, loads the model before the
  first request, so the first search does not spend Datasette's 1 s query time limit
  (``sql_time_limit_ms``) on loading it.
"""

import asyncio
import os
import sqlite3
import sys

from datasette import hookimpl

from . import load

# database file -> (stat signature, shadow table names)
_shadow_cache = {}


def _signature(path):
    """(mtime_ns, size) of the database file and of its WAL: changes when a table is made."""
    sig = []
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
            sig.append((st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append(None)
    return tuple(sig)


def _read_only(path):
    """A read-only stdlib connection to ``path`` with the extension loaded."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        load(conn)
    except Exception:
        conn.close()
        raise
    return conn


def _database_files(datasette, database=None):
    """(name, path) of the file-backed databases Datasette serves (one when ``database``)."""
    for name, db in datasette.databases.items():
        if database is not None and name != database:
            continue
        path = getattr(db, "path", None)
        if path and not getattr(db, "is_memory", False) and os.path.exists(path):
            yield name, str(path)


def _shadow_tables(path):
    """Names of the shadow tables in the database file ``path`` (cached until it changes)."""
    sig = _signature(path)
    hit = _shadow_cache.get(path)
    if hit and hit[0] == sig:
        return hit[1]
    try:
        conn = _read_only(path)
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")]
        finally:
            conn.close()
    except Exception as e:  # an unreadable file must not break Datasette's pages
        print(f"subcog: could not list the shadow tables of {path}: {e}", file=sys.stderr)
        names = []
    _shadow_cache[path] = (sig, names)
    return names


@hookimpl
def prepare_connection(conn):
    load(conn)


@hookimpl
def get_metadata(datasette, database):
    databases = {}
    for name, path in _database_files(datasette, database):
        hidden = _shadow_tables(path)
        if hidden:
            databases[name] = {"tables": {t: {"hidden": True} for t in hidden}}
    return {"databases": databases} if databases else {}


def _warm_up(paths):
    """Loads the model (process-wide, shared by every connection) when a memories table is
    in one of ``paths``; a failure is printed and left to the first query to report."""
    try:
        for path in paths:
            conn = _read_only(path)
            try:
                has = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                    "sql LIKE 'CREATE VIRTUAL TABLE%USING memories%' LIMIT 1").fetchone()
                if has:
                    conn.execute("SELECT embed('warm-up')").fetchone()
                    return
            finally:
                conn.close()
    except Exception as e:
        print(f"subcog: the embedding model did not load at start-up: {e}", file=sys.stderr)


@hookimpl
def startup(datasette):
    async def inner():
        paths = [p for _, p in _database_files(datasette)]
        await asyncio.get_running_loop().run_in_executor(None, _warm_up, paths)

    return inner
