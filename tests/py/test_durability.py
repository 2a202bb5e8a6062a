"""Several processes and killed processes against one database file.

* Two processes: a reader process never sees a writer's uncommitted rows, sees them on its
  next query after COMMIT, and a long-lived connection picks up another process's HNSW
  checkpoint (WAL and rollback-journal modes).
* Crashes: a child process writing in a loop (inserts, updates, deletes, 'optimize',
  snapshots, snapshot drops, restores to a snapshot, and a branch that lives across
  transactions and kills: created at a snapshot or now, written to, some of its memories
  changed in the table too, merged back under 'fail', 'ours' or 'theirs' and dropped) is
  killed with SIGKILL at random moments, many times. After each kill the database opens, subcog_integrity() (which
  checks the history too) is clean, the row count is exactly that of the confirmed
  commits, and every memory whose COMMIT returned is found by id and by keyword with
  exactly its vector, and (HNSW being approximate) at least 99% of them among the 10
  nearest neighbours of their own vector; a transaction cut off before COMMIT returned is
  all there or not there at all. History and table agree: the snapshots are exactly the
  committed ones, the table as of each snapshot holds exactly the ids alive when it was
  taken, as of the current version exactly the ids alive now, subcog_diff from the newest
  snapshot to now is the difference of those sets, and the last recorded change of a
  sampled memory leaves it as it is. Merges took exactly what a three-way merge of the
  committed writes takes (a 'fail' raised iff there were conflicts, and changed nothing),
  and the branch, while it lives, holds exactly its ids and its subcog_integrity is clean.

Runs the built extension ($SUBCOG_EXT) in /usr/bin/python3's sqlite3 (3.40.1), separate
processes via subprocess. SUBCOG_CRASH_ROUNDS (default 16) sets the number of kills.
"""

import json
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))
DIM = 8

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)


def vec(i):
    """A distinct, deterministic vector for memory `i` (its own nearest neighbour)."""
    rng = random.Random(i)
    return struct.pack(f"<{DIM}f", *[rng.uniform(-1, 1) for _ in range(DIM)])


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    return conn


# The child: writes transactions forever, announcing each before and after COMMIT. Ops:
# ["i", id] insert, ["u", id] update, ["d", id] delete, ["s", name] snapshot, ["x", name]
# snapshot dropped, ["r", name] restore to that snapshot; the branch `b` of m, which lives
# across transactions (and kills): ["b", at] created at snapshot `at` (None: now),
# ["bi"|"bu"|"bd", id] insert into / update / delete from it, ["m", policy, failed] merged
# into m (`failed`: the merge raised its conflict error) and dropped. A restore comes
# first in its transaction and every transaction inserts after it, so the inserts tell
# whether it committed.
WRITER = textwrap.dedent(
    r"""
    import json, random, sqlite3, struct, sys
    path, ext, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    DIM = 8
    P_SNAPSHOT, P_DROP, P_RESTORE = 0.08, 0.02, 0.05
    # Branch writes and merges: a branch is created (at a snapshot or now) with P_BRANCH,
    # written to in every transaction while it exists (some ids on both sides, so merges
    # meet conflicts), merged (policy fail, ours or theirs) and dropped with P_MERGE.
    P_BRANCH, P_MERGE = 0.12, 0.3
    def has_branch():
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'b'").fetchone()[0] > 0
    def random_id(table):
        row = conn.execute(f"SELECT id FROM {table} ORDER BY random() LIMIT 1").fetchone()
        return row and row[0]
    def merge_hook(ops, snaps):
        global nxt
        if not has_branch():
            if rng.random() >= P_BRANCH:
                return
            at = rng.choice(snaps[-3:]) if snaps and rng.random() < 0.5 else None
            if rng.random() < 0.5:
                conn.execute("SELECT subcog_branch('m', 'b', ?)", (at,)).fetchone()
            else:
                fork = f", at='{at}'" if at else ""
                conn.execute(f"CREATE VIRTUAL TABLE b USING memories(branch_of='m'{fork})")
            ops.append(["b", at])
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.4:
                conn.execute("INSERT INTO b(id, content, embedding) VALUES (?, ?, ?)",
                             (nxt, f"crash memory tok{nxt}", vec(nxt)))
                ops.append(["bi", nxt]); nxt += 1
                continue
            i = random_id("b")
            if i is None:
                continue
            if r < 0.75:
                conn.execute("UPDATE b SET importance = ? WHERE id = ?", (rng.random(), i))
                ops.append(["bu", i])
            else:
                conn.execute("DELETE FROM b WHERE id = ?", (i,)); ops.append(["bd", i])
            if rng.random() < 0.3 and conn.execute("SELECT count(*) FROM m WHERE id = ?", (i,)).fetchone()[0]:
                # The same memory changed in m too: a conflict at the merge.
                if rng.random() < 0.7:
                    conn.execute("UPDATE m SET importance = ? WHERE id = ?", (rng.random(), i))
                    ops.append(["u", i])
                else:
                    conn.execute("DELETE FROM m WHERE id = ?", (i,)); ops.append(["d", i])
        if rng.random() < P_MERGE:
            policy = rng.choice(["fail", "ours", "theirs"])
            try:
                conn.execute("SELECT subcog_merge('b', 'm', ?)", (policy,)).fetchone()
                failed = False
            except sqlite3.OperationalError as e:
                if policy != "fail" or "conflict" not in str(e):
                    raise
                failed = True
            conn.execute("DROP TABLE b")
            ops.append(["m", policy, failed])
    def vec(i):
        r = random.Random(i)
        return struct.pack(f"<{DIM}f", *[r.uniform(-1, 1) for _ in range(DIM)])
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    def next_free():
        # Never an id m had (a restore brings ids back), nor one a branch holds.
        n = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM m_history").fetchone()[0]
        return max(n, (conn.execute("SELECT max(id) FROM b").fetchone()[0] or 0) + 1
                   if has_branch() else n)
    nxt = next_free()
    snaps = [r[0] for r in conn.execute(
        "SELECT name FROM subcog_snapshots('m') ORDER BY version, created_at")]
    made = 0
    while True:
        ops = []
        new_snaps = list(snaps)
        conn.execute("BEGIN")
        if new_snaps and rng.random() < P_RESTORE:
            name = rng.choice(new_snaps[-3:])
            conn.execute("SELECT subcog_restore('m', ?)", (name,)).fetchone()
            ops.append(["r", name])
            nxt = max(nxt, next_free())  # a restore can bring back ids above nxt
        for _ in range(rng.randint(1, 8)):
            conn.execute("INSERT INTO m(id, content, embedding) VALUES (?, ?, ?)",
                         (nxt, f"crash memory tok{nxt}", vec(nxt)))
            ops.append(["i", nxt]); nxt += 1
        if rng.random() < 0.3:
            row = conn.execute("SELECT id FROM m ORDER BY random() LIMIT 1").fetchone()
            if row and row[0] not in [o[1] for o in ops]:
                conn.execute("DELETE FROM m WHERE id = ?", (row[0],)); ops.append(["d", row[0]])
        if rng.random() < 0.2:
            row = conn.execute("SELECT id FROM m ORDER BY random() LIMIT 1").fetchone()
            if row and row[0] not in [o[1] for o in ops]:
                conn.execute("UPDATE m SET importance = ? WHERE id = ?", (rng.random(), row[0]))
                ops.append(["u", row[0]])
        if rng.random() < 0.05:
            conn.execute("INSERT INTO m(m) VALUES ('optimize')")
        merge_hook(ops, new_snaps)
        if len(new_snaps) > 3 and rng.random() < P_DROP:
            name = new_snaps.pop(0)
            conn.execute("SELECT subcog_snapshot_drop('m', ?)", (name,)).fetchone()
            ops.append(["x", name])
        if rng.random() < P_SNAPSHOT:
            made += 1
            name = f"s{seed}_{made}"
            conn.execute("SELECT subcog_snapshot('m', ?)", (name,)).fetchone()
            ops.append(["s", name]); new_snaps.append(name)
        print("B " + json.dumps(ops), flush=True)
        conn.execute("COMMIT")
        snaps = new_snaps
        print("C", flush=True)
    """
)


class Expected:
    """What the committed transactions leave: the memories alive (id -> the write that
    made its row: two sides hold the same row iff they hold the same write), those alive
    at each snapshot, and the branch `b` (None, or its rows at the fork and now)."""

    def __init__(self):
        self.alive, self.snaps, self.branch, self.writes = {}, {}, None, 0
        self.done = {"r": 0, "s": 0, "x": 0, "m": 0, "conflicts": 0}

    def write(self):
        self.writes += 1
        return self.writes

    def replay(self, ops):
        """Applies one committed transaction's ops, in the order the child ran them."""
        alive, snaps = self.alive, self.snaps
        for kind, arg, *rest in ops:
            if kind in ("i", "u"):
                alive[arg] = self.write()
            elif kind == "d":
                del alive[arg]
            elif kind == "s":
                snaps[arg] = dict(alive)
            elif kind == "x":
                del snaps[arg]
            elif kind == "r":
                alive.clear()
                alive.update(snaps[arg])
            elif kind == "b":
                assert self.branch is None, ops
                fork = dict(snaps[arg] if arg is not None else alive)
                self.branch = {"fork": fork, "rows": dict(fork)}
            elif kind in ("bi", "bu"):
                self.branch["rows"][arg] = self.write()
            elif kind == "bd":
                del self.branch["rows"][arg]
            elif kind == "m":
                self.merge(arg, rest[0])
            else:
                raise AssertionError(f"unknown op {kind!r}")
            self.done[kind] = self.done.get(kind, 0) + 1

    def merge(self, policy, failed):
        """The three-way merge of the branch into m (README, Branches and merge): a memory
        the branch changed is taken unless m changed it too (to another row): a conflict,
        which `fail` refuses (nothing changes), `ours` keeps and `theirs` takes."""
        base, theirs, ours = self.branch["fork"], self.branch["rows"], self.alive
        take, conflicts = [], []
        for i in sorted(set(base) | set(theirs)):
            if theirs.get(i) == base.get(i) or ours.get(i) == theirs.get(i):
                continue
            # New ids come from the same counter: m never holds a branch's new id.
            assert i in base or i not in ours, (i, "would be renumbered")
            (conflicts if i in base and ours.get(i) != base.get(i) else take).append(i)
        assert failed == (policy == "fail" and bool(conflicts)), (policy, failed, conflicts)
        self.done["conflicts"] += len(conflicts)
        if failed:
            take = []
        elif policy == "theirs":
            take += conflicts
        for i in take:
            if i in theirs:
                ours[i] = theirs[i]
            else:
                del ours[i]
        self.branch = None


def check_history(conn, alive, snaps, sample):
    """History and table agree: the snapshots, the table as of each of them and as of the
    current version, the diff from the newest snapshot, the last change of each sampled
    memory."""
    listed = dict(conn.execute("SELECT name, version FROM subcog_snapshots('m')").fetchall())
    assert set(listed) == set(snaps), (sorted(listed), sorted(snaps))
    # As of a snapshot: the two newest and two others (each as-of builds a copy).
    by_version = sorted(snaps, key=lambda n: (listed[n], n))
    older = by_version[:-2]
    picked = by_version[-2:] + random.Random(len(alive)).sample(older, min(2, len(older)))
    for name in picked:
        got = {r[0] for r in conn.execute("SELECT id FROM m WHERE as_of = ?", (name,))}
        assert got == snaps[name], (name, sorted(got ^ snaps[name])[:20])
    now = conn.execute("SELECT subcog_version('m')").fetchone()[0]
    got = {r[0] for r in conn.execute("SELECT id FROM m WHERE as_of = ?", (now,))}
    assert got == alive, sorted(got ^ alive)[:20]
    if snaps:
        newest = max(snaps, key=lambda n: listed[n])
        rows = conn.execute("SELECT id, change FROM subcog_diff('m', ?)", (newest,)).fetchall()
        added = {i for i, c in rows if c == "added"}
        removed = {i for i, c in rows if c == "removed"}
        assert added == alive - snaps[newest], newest
        assert removed == snaps[newest] - alive, newest
    for i in sample:
        last = conn.execute("SELECT change, after FROM subcog_history('m', ?) "
                            "ORDER BY version DESC LIMIT 1", (i,)).fetchone()
        assert last is not None and last[1] is not None, (i, last)
        assert json.loads(last[1])["content"] == f"crash memory tok{i}", (i, last)


def check_branch(conn, branch):
    """The branch exists iff one was created and not merged, holds the ids expected, and
    its history agrees with it."""
    exists = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'b'").fetchone()[0]
    assert exists == (branch is not None), branch
    if branch is not None:
        report = json.loads(conn.execute("SELECT subcog_integrity('b')").fetchone()[0])
        assert report["ok"], report
        got = {r[0] for r in conn.execute("SELECT id FROM b")}
        assert got == set(branch["rows"]), sorted(got ^ set(branch["rows"]))[:20]


def check_found(conn, ids):
    """Each memory is there by id and keyword, with exactly its vector. Returns how many
    are missing from their own 10 nearest neighbours: HNSW is approximate (a graph can
    leave about 1 node in 2,000 unreachable, measured on fresh builds too)."""
    misses = 0
    for i in ids:
        row = conn.execute("SELECT embedding FROM m WHERE id = ?", (i,)).fetchone()
        assert row is not None and row[0] == vec(i), i
        kw = [r[0] for r in conn.execute("SELECT id FROM m WHERE content MATCH ?", (f"tok{i}",))]
        assert kw == [i], (i, kw)
        nn = conn.execute("SELECT id, distance FROM m WHERE embedding MATCH ? AND k = 10",
                          (vec(i),)).fetchall()
        misses += (i, 0.0) not in nn
    return misses


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sigkill_during_writes_loses_no_committed_memory(tmp_path, journal):
    path = str(tmp_path / "crash.db")
    conn = connect(path)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.execute("CREATE VIRTUAL TABLE m USING memories(dim=8, auto_embed=off, exact_max=0)")
    conn.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(42 if journal == "wal" else 43)
    want = Expected()
    checked = misses = 0
    rounds = int(os.environ.get("SUBCOG_CRASH_ROUNDS", "16"))
    for rnd in range(rounds):
        child = subprocess.Popen([sys.executable, str(script), path, EXT, str(rnd)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.15, 0.6))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        lines = out.splitlines()
        committed, unsure = [], None
        for j, line in enumerate(lines):
            if line.startswith("B "):
                ops = json.loads(line[2:])
                if j + 1 < len(lines) and lines[j + 1] == "C":
                    committed.append(ops)
                else:
                    unsure = ops
        conn = connect(path)
        report = json.loads(conn.execute("SELECT subcog_integrity('m')").fetchone()[0])
        assert report["ok"], report
        if unsure is not None:
            # Cut off between BEGIN..COMMIT and "C": all or nothing.
            present = [conn.execute("SELECT count(*) FROM m WHERE id = ?", (op[1],)).fetchone()[0]
                       for op in unsure if op[0] == "i"]
            assert len(set(present)) == 1, (unsure, present)
            if present[0] == 1:
                committed.append(unsure)
        for ops in committed:
            want.replay(ops)
        alive, snaps = set(want.alive), {n: set(s) for n, s in want.snaps.items()}
        check_branch(conn, want.branch)
        count = conn.execute("SELECT count(*) FROM m").fetchone()[0]
        assert count == len(alive), (rnd, count, len(alive))
        sample = sorted(alive) if rnd == rounds - 1 else rng.sample(sorted(alive), min(40, len(alive)))
        misses += check_found(conn, sample)
        check_history(conn, alive, snaps, sample[:40])
        checked += len(sample)
        conn.close()
    assert len(alive) > 100, "the writer made too little progress to test anything"
    # Restores, snapshots and merges (some meeting conflicts) did happen and commit.
    done = want.done
    assert done["r"] >= 3 and done["s"] >= 5 and done["m"] >= 3 and done["conflicts"] >= 1, done
    assert misses <= checked // 100, f"KNN recall too low: {misses} of {checked} missed"


READER = textwrap.dedent(
    r"""
    import json, sqlite3, sys
    path, ext, probe = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    conn = sqlite3.connect(path, timeout=10)
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    print(json.dumps({
        "count": conn.execute("SELECT count(*) FROM m").fetchone()[0],
        "knn": [r[0] for r in conn.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 1", (probe,))],
        "kw": [r[0] for r in conn.execute("SELECT id FROM m WHERE content MATCH 'tok5000'")],
    }))
    """
)


def read_in_other_process(tmp_path, path, probe):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    out = subprocess.run([sys.executable, str(script), path, EXT, probe.hex()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_another_process_sees_commits_only(tmp_path, journal):
    path = str(tmp_path / "two.db")
    w = connect(path)
    w.execute(f"PRAGMA journal_mode={journal}")
    w.execute("CREATE VIRTUAL TABLE m USING memories(dim=8, auto_embed=off, exact_max=0)")
    w.execute("BEGIN")
    for i in range(1, 1201):
        w.execute("INSERT INTO m(id, content, embedding) VALUES (?, ?, ?)", (i, f"tok{i}", vec(i)))
    w.execute("COMMIT")
    before = read_in_other_process(tmp_path, path, vec(5000))
    assert before["count"] == 1200 and before["kw"] == []

    w.execute("BEGIN")
    w.execute("INSERT INTO m(id, content, embedding) VALUES (5000, 'tok5000', ?)", (vec(5000),))
    w.execute("INSERT INTO m(m) VALUES ('optimize')")
    # uncommitted: the other process sees the old state (rollback-journal mode lets readers
    # in until the writer needs its exclusive lock at COMMIT).
    during = read_in_other_process(tmp_path, path, vec(5000))
    assert during["count"] == 1200 and during["kw"] == [] and 5000 not in during["knn"]
    w.execute("COMMIT")
    after = read_in_other_process(tmp_path, path, vec(5000))
    assert after == {"count": 1201, "knn": [5000], "kw": [5000]}


def test_open_connection_follows_another_process_checkpoint(tmp_path):
    path = str(tmp_path / "follow.db")
    a = connect(path)
    a.execute("PRAGMA journal_mode=wal")
    a.execute("CREATE VIRTUAL TABLE m USING memories(dim=8, auto_embed=off, exact_max=0)")
    a.execute("BEGIN")
    for i in range(1, 1101):
        a.execute("INSERT INTO m(id, content, embedding) VALUES (?, ?, ?)", (i, f"tok{i}", vec(i)))
    a.execute("COMMIT")
    assert [r[0] for r in a.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 1", (vec(7),))] == [7]
    # Another process deletes 7, adds 7000 and checkpoints (new snapshot generation).
    code = textwrap.dedent(
        f"""
        import sqlite3, struct, random
        def vec(i):
            r = random.Random(i)
            return struct.pack("<8f", *[r.uniform(-1, 1) for _ in range(8)])
        c = sqlite3.connect({path!r}, isolation_level=None, timeout=10)
        c.enable_load_extension(True); c.load_extension({EXT!r})
        c.execute("BEGIN")
        c.execute("DELETE FROM m WHERE id = 7")
        c.execute("INSERT INTO m(id, content, embedding) VALUES (7000, 'tok7000', ?)", (vec(7000),))
        c.execute("INSERT INTO m(m) VALUES ('optimize')")
        c.execute("COMMIT")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 7 not in [r[0] for r in a.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 3", (vec(7),))]
    assert [r[0] for r in a.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 1", (vec(7000),))] == [7000]
    report = json.loads(a.execute("SELECT subcog_integrity('m')").fetchone()[0])
    assert report["ok"] and report["counts"]["pending"] == 0, report


def test_read_only_connection_searches_and_checks(tmp_path):
    path = str(tmp_path / "ro.db")
    w = connect(path)
    w.execute("CREATE VIRTUAL TABLE m USING memories(dim=8, auto_embed=off, exact_max=0)")
    w.execute("BEGIN")
    for i in range(1, 1201):
        w.execute("INSERT INTO m(id, content, embedding) VALUES (?, ?, ?)", (i, f"tok{i}", vec(i)))
    w.execute("COMMIT")
    w.execute("INSERT INTO m(id, content, embedding) VALUES (5000, 'tok5000', ?)", (vec(5000),))
    w.close()
    r = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    r.enable_load_extension(True)
    r.load_extension(EXT)
    assert [x[0] for x in r.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 1", (vec(5000),))] == [5000]
    assert [x[0] for x in r.execute("SELECT id FROM vec_search('m', ?, 1)", (vec(7),))] == [7]
    assert [x[0] for x in r.execute("SELECT id FROM m WHERE content MATCH 'tok9'")] == [9]
    report = json.loads(r.execute("SELECT subcog_integrity('m')").fetchone()[0])
    assert report["ok"] and report["fts_integrity_check"].startswith("skipped"), report
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        r.execute("INSERT INTO m(content, embedding) VALUES ('x', ?)", (vec(1),))
