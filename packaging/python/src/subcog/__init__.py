"""subcog: persistent memory for AI agents in one SQLite file.

This package ships the subcog SQLite extension (``libsubcog.so``), the ``subcog`` binary
(SQL shell, import/export, MCP server), the all-MiniLM-L6-v2 model (int8 ONNX) and its
tokenizer; ONNX Runtime comes from the ``onnxruntime`` wheel it depends on. Nothing is
downloaded at run time.

    import sqlite3, subcog
    db = sqlite3.connect("memory.db")
    subcog.load(db)
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS mem USING memories()")

:func:`load` and the ``subcog`` console script point the extension at the installed model
and runtime through the environment variables the extension reads when it loads the model
(``SUBCOG_MODEL_DIR``, ``SUBCOG_ORT_LIB``); a variable that is already set is kept, so a
model or runtime of your own still wins.
"""

import importlib.metadata
import importlib.util
import os
from pathlib import Path

__all__ = ["LoadError", "load", "loadable_path", "binary_path", "model_dir", "ort_library",
           "configure_environment"]

_PKG = Path(__file__).resolve().parent

try:
    __version__ = importlib.metadata.version("subcog")
except importlib.metadata.PackageNotFoundError:  # imported from a source tree
    __version__ = "0+unknown"


class LoadError(RuntimeError):
    """The extension could not be loaded into a connection (the message names the fix)."""


def loadable_path():
    """Absolute path (str) of the loadable extension ``libsubcog.so``, for hosts other than
    :func:`load`: ``sqlite-utils --load-extension``, APSW, ``.load`` in the sqlite3 shell.
    Its entry point is ``sqlite3_subcog_init``. Such hosts find the model only when
    :func:`configure_environment` ran in their process (or the variables are set)."""
    return str(_PKG / "libsubcog.so")


def binary_path():
    """Absolute path (str) of the bundled ``subcog`` binary (bundled SQLite; ``subcog mcp``
    serves MCP over stdio)."""
    return str(_PKG / "bin" / "subcog")


def model_dir():
    """Absolute path (str) of the folder holding ``model.onnx`` and ``tokenizer.json``."""
    return str(_PKG / "model")


def ort_library():
    """Absolute path (str) of ``libonnxruntime.so.*`` inside the installed ``onnxruntime``
    wheel (found without importing onnxruntime, which would import numpy).

    Raises :class:`LoadError` when onnxruntime is not installed or holds no library."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise LoadError("the onnxruntime package is not installed: "
                        "`pip install onnxruntime==1.31.1` (a dependency of subcog)")
    for root in spec.submodule_search_locations:
        libs = sorted((Path(root) / "capi").glob("libonnxruntime.so.*"))
        if libs:
            return str(libs[-1])
    raise LoadError(f"no libonnxruntime.so.* in {list(spec.submodule_search_locations)}: "
                    "reinstall onnxruntime==1.31.1")


def configure_environment(environ=None):
    """Sets ``SUBCOG_MODEL_DIR`` and ``SUBCOG_ORT_LIB`` in ``environ`` (default
    ``os.environ``, which the extension reads in this process) to the installed model and
    runtime, unless they (or ``ORT_DYLIB_PATH``) are already set to a non-empty value.
    Returns ``environ``."""
    env = os.environ if environ is None else environ
    if not env.get("SUBCOG_MODEL_DIR"):
        env["SUBCOG_MODEL_DIR"] = model_dir()
    if not env.get("SUBCOG_ORT_LIB") and not env.get("ORT_DYLIB_PATH"):
        env["SUBCOG_ORT_LIB"] = ort_library()
    return env


_NO_EXTENSIONS = (
    "{kind} cannot load SQLite extensions (this Python's sqlite3 module was built without "
    "them, e.g. pyenv/macOS builds without --enable-loadable-sqlite-extensions). Fix: use a "
    "Python whose sqlite3 can (Debian/Ubuntu's /usr/bin/python3, the python.org builds), or "
    "`pip install sqlean.py` and connect with `import sqlean as sqlite3`, or "
    "`pip install pysqlite3-binary` and `from pysqlite3 import dbapi2 as sqlite3`"
)


def load(conn):
    """Loads the subcog extension into ``conn`` and points it at the installed model.

    ``conn`` is a DB-API connection whose module can load extensions: stdlib
    ``sqlite3.Connection``, ``pysqlite3``, ``sqlean``, or an ``apsw.Connection``.
    Loading is switched on only for the call and switched off again.

    Raises :class:`LoadError` when the connection cannot load extensions at all (the
    message names the fix) or when SQLite refuses the extension (e.g. a host SQLite older
    than 3.37.0; the message is SQLite's)."""
    configure_environment()
    enable = getattr(conn, "enable_load_extension", None) or getattr(
        conn, "enableloadextension", None)
    load_ext = getattr(conn, "load_extension", None) or getattr(conn, "loadextension", None)
    if enable is None or load_ext is None:
        raise LoadError(_NO_EXTENSIONS.format(kind=f"{type(conn).__module__}."
                                              f"{type(conn).__qualname__}"))
    try:
        enable(True)
    except Exception as e:  # e.g. sqlite3.NotSupportedError on some builds
        raise LoadError(_NO_EXTENSIONS.format(kind=f"this connection ({e})")) from e
    try:
        load_ext(loadable_path())
    except Exception as e:
        raise LoadError(f"SQLite could not load {loadable_path()}: {e}") from e
    finally:
        enable(False)
