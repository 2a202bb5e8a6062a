"""Shared helpers of the packaging tests (tests/packaging; `make test-packaging`).

The packages are `make wheel`'s dist/subcog-*.whl and `make npm`'s dist/subcog-*.tgz. They
are installed into fresh folders under the system temp directory with an empty HOME and an
environment without SUBCOG_* (or ORT_DYLIB_PATH, XDG_DATA_HOME, or anything naming the
checkout). What uses them runs from a folder outside the checkout in a private mount
namespace in which an empty tmpfs is mounted over the checkout and over the
`make setup` folder (`unshare -m`, root only): a package that reached into either fails.
Where unshare is not allowed (not root) the run says so and only the path checks remain;
SUBCOG_PACKAGING_REQUIRE_HIDE=1 makes that a failure.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
SETUP_HOME = Path(os.environ.get("SUBCOG_HOME") or (
    Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "subcog"))
# pip's and npm's download caches: outside the checkout and outside every HOME the tests make
# (the real user's cache folder; the first run fills it).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "subcog-packaging"
SYSTEM_PYTHON = "/usr/bin/python3"

# Three memories and, for each, a question whose hybrid search must rank it first.
MEMORIES = [
    "Deploy the shop with `make deploy-prod` once CI is green on main.",
    "The user prefers tabs, width 4, in every Go project.",
    "Alice owns the billing service and reviews every Stripe change.",
]
QUERIES = [
    ("how do I ship the shop to production?", 0),
    ("what indentation does the user like in Go?", 1),
    ("who should review a change to payments?", 2),
]


def one(pattern):
    """The one file in dist/ matching `pattern` (fails naming the make target otherwise)."""
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        pytest.fail(f"expected one dist/{pattern}, found {[f.name for f in found]}: "
                    "run `make wheel npm` first")
    return found[0]


def clean_env(home, **extra):
    """os.environ without SUBCOG_*, ORT_DYLIB_PATH, XDG_DATA_HOME, virtualenv variables or
    any value naming the checkout; PATH without folders of the checkout; HOME = `home`."""
    drop = ("SUBCOG_", "ORT_DYLIB_PATH", "XDG_", "VIRTUAL_ENV", "PYTHON", "npm_", "NODE_",
            "MAKE", "MFLAGS", "CARGO", "RUST")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop) and str(REPO) not in v}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                  if p and not p.startswith(str(REPO)))
    env["HOME"] = str(home)
    env.update(extra)
    for k, v in env.items():
        assert str(REPO) not in v, (k, v)
    return env


def _can_hide():
    probe = ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs none '{REPO}' && test ! -e '{REPO}/Cargo.toml'"]
    try:
        return shutil.which("unshare") is not None and subprocess.run(
            probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


CAN_HIDE = _can_hide()


def hidden(cmd):
    """`cmd` (argv list) run with the checkout and the `make setup` folder hidden (empty
    tmpfs over both) when this machine allows it."""
    if not CAN_HIDE:
        if os.environ.get("SUBCOG_PACKAGING_REQUIRE_HIDE") == "1":
            pytest.fail("unshare -m is not allowed here: cannot hide the checkout")
        print("NOTE: unshare -m not allowed (not root?): the checkout stays visible; "
              "only the environment and path checks apply")
        return list(cmd)
    mounts = [f"mount -t tmpfs none '{REPO}'"]
    if SETUP_HOME.is_dir():
        mounts.append(f"mount -t tmpfs none '{SETUP_HOME}'")
    script = " && ".join(mounts) + ' && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *cmd]


def run(cmd, env, cwd, timeout=300, input=None):
    """Runs `cmd` (checkout hidden) and returns (CompletedProcess, seconds); fails with its
    output when it exits non-zero."""
    t = time.monotonic()
    p = subprocess.run(hidden(cmd), env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, input=input)
    took = time.monotonic() - t
    if p.returncode != 0:
        pytest.fail(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p, took


def assert_no_checkout_paths(root):
    """No symbolic link under `root` points into the checkout and no text file names it
    (binaries are skipped: only files that tools read as configuration can redirect)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink() and str(os.readlink(p)).startswith(str(REPO)):
                bad.append(f"{p} -> {os.readlink(p)}")
            elif p.is_file() and not p.is_symlink() and p.suffix in (
                    ".py", ".pth", ".json", ".txt", ".cfg", ".toml", ".js", ".cjs", ".mjs", ""):
                try:
                    if str(REPO).encode() in p.read_bytes()[:1 << 20]:
                        bad.append(str(p))
                except OSError:
                    pass
    assert not bad, f"installed files naming the checkout {REPO}: {bad[:10]}"


@pytest.fixture(scope="session")
def outside():
    """A fresh folder outside the checkout with an empty HOME in it."""
    d = Path(tempfile.mkdtemp(prefix="subcog-packaging-"))
    assert not str(d).startswith(str(REPO))
    (d / "home").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def report(what, **numbers):
    """Prints a measurement line (shown with pytest -s, and kept in the log by -rA)."""
    print(f"MEASURED {what}: " + json.dumps(numbers))
