"""The wheel (`make wheel`) installed with pip into a fresh venv of /usr/bin/python3 (empty
HOME, no SUBCOG_*; dependencies from PyPI), then used from outside the checkout with the
checkout hidden: stdlib sqlite3, APSW, the `subcog mcp` console script through the MCP
Python SDK, the Datasette plugin, and the `.so` through `sqlite-utils --load-extension`."""

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile

import pytest

from conftest import (CACHE, MEMORIES, QUERIES, REPO, SYSTEM_PYTHON, assert_no_checkout_paths,
                      clean_env, one, report, run)

SCRIPTS = REPO / "tests/packaging/scripts"
# Only the fresh venv of these tests needs it (the repo's .venv does not), so it is pinned here.
SQLITE_UTILS = "sqlite-utils==4.2.1"
VERSION = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def pinned(name):
    """`name==version` as pinned in tests/requirements.txt."""
    for line in (REPO / "tests/requirements.txt").read_text().splitlines():
        req = line.split("#")[0].strip()
        if req.lower().startswith(name.lower() + "=="):
            return req
    pytest.fail(f"{name} is not pinned in tests/requirements.txt")


@pytest.fixture(scope="session")
def wheel():
    return one("subcog-*.whl")


@pytest.fixture(scope="session")
def venv(outside, wheel):
    """(python, env, workdir) of a fresh venv with the wheel and the test clients installed."""
    if not shutil.which(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} is missing")
    work = outside / "py"
    work.mkdir()
    whl = shutil.copy(wheel, work)   # pip records where it came from: not the checkout
    for s in SCRIPTS.glob("*.py"):
        shutil.copy(s, work)
    env = clean_env(outside / "home", PIP_CACHE_DIR=str(CACHE / "pip"),
                    PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(work / "venv")], env=env, cwd=work,
                   check=True, timeout=300)
    py = str(work / "venv/bin/python")
    t = time.monotonic()
    subprocess.run([py, "-m", "pip", "install", "-q", whl], env=env, cwd=work, check=True,
                   timeout=900)
    took = time.monotonic() - t
    subprocess.run([py, "-m", "pip", "install", "-q", pinned("mcp"), pinned("datasette"),
                    pinned("apsw"), SQLITE_UTILS], env=env, cwd=work, check=True, timeout=900)
    report("wheel install (pip install of the wheel and its dependencies, pip cache warm "
           "after the first run)", seconds=round(took, 1),
           wheel_bytes=wheel.stat().st_size)
    assert_no_checkout_paths(work / "venv")
    run_env = clean_env(outside / "home", PATH=f"{work}/venv/bin:" + env["PATH"])
    return py, run_env, work


def script(venv, name, db):
    py, env, work = venv
    p, took = run([py, name, str(work / db), json.dumps(MEMORIES), json.dumps(QUERIES)],
                  env=env, cwd=work)
    return json.loads(p.stdout.strip().splitlines()[-1]), took


def test_wheel_holds_the_extension_binary_model_and_tokenizer(wheel):
    assert re.fullmatch(rf"subcog-{re.escape(VERSION)}-py3-none-manylinux_2_34_x86_64\.whl",
                        wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        meta = z.read(f"subcog-{VERSION}.dist-info/METADATA").decode()
        entry = z.read(f"subcog-{VERSION}.dist-info/entry_points.txt").decode()
    for f in ("subcog/libsubcog.so", "subcog/bin/subcog", "subcog/model/model.onnx",
              "subcog/model/tokenizer.json", "subcog/__init__.py",
              "subcog/datasette_plugin.py"):
        assert f in infos, f
    for f in ("subcog/libsubcog.so", "subcog/bin/subcog"):
        assert (infos[f].external_attr >> 16) & 0o111, f"{f} is not executable in the wheel"
    assert "Requires-Dist: onnxruntime==1.31.1" in meta
    assert "subcog = subcog._cli:main" in entry and "[datasette]" in entry


def test_glibc_floor_matches_the_tag(wheel, tmp_path):
    """The platform tag's glibc (2.34) is the newest GLIBC_ symbol version the native files
    need (objdump -T; auditwheel show says the same, see packaging/README.md)."""
    objdump = shutil.which("objdump")
    if not objdump:
        pytest.skip("objdump (binutils) not installed")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path, ["subcog/libsubcog.so", "subcog/bin/subcog"])
    newest = (0, 0)
    for f in ("subcog/libsubcog.so", "subcog/bin/subcog"):
        out = subprocess.run([objdump, "-T", str(tmp_path / f)], capture_output=True,
                             text=True, check=True).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            newest = max(newest, (int(major), int(minor)))
    assert newest == (2, 34), newest


def test_stdlib_sqlite3_load_and_hybrid_search(venv):
    out, took = script(venv, "py_sqlite3.py", "sqlite3.db")
    assert out["ids"] == len(MEMORIES)
    report("wheel: python process start to first stored memory (import, load, model load, "
           "embed, commit)", seconds=out["first_insert_s"], whole_script_s=round(took, 2))


def test_apsw_load_and_hybrid_search(venv):
    out, _ = script(venv, "py_apsw.py", "apsw.db")
    assert out["rows"] == 2


def test_console_script_serves_mcp_to_the_python_sdk(venv):
    out, took = script(venv, "py_mcp.py", "mcp.db")
    assert {"memory_store", "memory_search", "memory_get"} <= set(out["tools"])
    report("wheel: subcog mcp via the MCP SDK (start, 3 stores, 3 searches)",
           seconds=round(took, 2))


def test_datasette_plugin_serves_hybrid_search_with_no_flags(venv):
    out, _ = script(venv, "py_datasette.py", "memory.db")
    assert "mem_content" in out["hidden"]
    report("wheel: datasette serve to first answer (model warmed at start-up)",
           seconds=out["datasette_up_s"])


def test_sqlite_utils_loads_the_wheel_extension(venv):
    out, _ = script(venv, "py_sqlite_utils.py", "utils.db")
    assert out["rows"] == 2


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
