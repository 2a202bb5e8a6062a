"""`subcog mcp` loads the embedding model in the background as it starts.

Behaviour, not timings: the stderr line that reports the load arrives although no tool
call was made, `memory_stats` then says the model is loaded, and a missing model is only
reported (the tools that need no model keep working)."""

import queue
import re
import threading

import pytest

from conftest import RawServer, child_env, run

pytestmark = pytest.mark.usefixtures("subcog")

LOADED = re.compile(r"^subcog: embedding model loaded in (\d+) ms \(all-MiniLM-L6-v2")


def stderr_lines(server):
    """A queue that receives the server's stderr lines as they come (None at EOF)."""
    q = queue.Queue()

    def pump():
        for line in server.proc.stderr:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_for(q, pattern, timeout=60):
    """The first line matching `pattern`, and the lines seen before it."""
    seen = []
    while True:
        try:
            line = q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stderr line matching {pattern.pattern!r} in {timeout} s; "
                                 f"seen: {seen}") from None
        assert line is not None, f"stderr closed before {pattern.pattern!r}; seen: {seen}"
        m = pattern.search(line)
        if m:
            return m, seen
        seen.append(line)


def finish(server):
    """Closes stdin and returns (exit code, remaining stdout); stderr stays with the pump."""
    server.proc.stdin.close()
    rest = server.proc.stdout.read()
    return server.proc.wait(timeout=30), rest


def test_model_loads_before_any_tool_call(db_path):
    s = RawServer(db_path)
    try:
        q = stderr_lines(s)
        s.initialize()
        # No tool call yet: the load was started by the server itself.
        m, _ = wait_for(q, LOADED)
        assert int(m.group(1)) > 0
        stats = s.call("memory_stats", {})["structuredContent"]
        assert stats["model_loaded"] is True and stats["model_present"] is True
        stored = s.call("memory_store", {"content": "The model was already loaded."})
        assert stored["isError"] is False, stored
        assert stored["structuredContent"]["outcome"] == "inserted"
        code, rest = finish(s)
        assert code == 0 and rest == ""
        # The load happened once: no second line from a tool call loading it again.
        remaining = []
        while (line := q.get(timeout=30)) is not None:
            remaining.append(line)
        assert not [x for x in remaining if "embedding model" in x], remaining
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_store_right_after_start_waits_for_the_same_load(db_path):
    """A store sent straight after initialize (usually while the background load runs)
    succeeds, and the model is loaded once: one line on stderr."""
    s = RawServer(db_path)
    try:
        q = stderr_lines(s)
        s.initialize()
        stored = s.call("memory_store", {"content": "Stored while the model was loading."})
        assert stored["isError"] is False, stored
        code, _ = finish(s)
        assert code == 0
        lines = []
        while (line := q.get(timeout=30)) is not None:
            lines.append(line)
        assert len([x for x in lines if LOADED.search(x)]) == 1, lines
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_missing_model_is_logged_and_keyword_tools_work(tmp_path, db_path):
    run("sql", db_path, "CREATE VIRTUAL TABLE memories USING memories(); "
        "INSERT INTO memories(content) VALUES ('The staging database is called marmot.')")
    empty = tmp_path / "no-model"
    empty.mkdir()
    s = RawServer(db_path, env=child_env(SUBCOG_MODEL_DIR=str(empty)))
    try:
        q = stderr_lines(s)
        s.initialize()
        m, _ = wait_for(q, re.compile(r"^subcog: embedding model not loaded \((.*)\)"))
        assert str(empty / "model.onnx") in m.group(1) and "make setup" in m.group(1)
        stats = s.call("memory_stats", {})["structuredContent"]
        assert stats["model_loaded"] is False and stats["model_present"] is False
        assert stats["total"] == 1
        found = s.call("memory_search", {"query": "marmot", "mode": "keyword"})
        assert found["isError"] is False, found
        assert [r["content"] for r in found["structuredContent"]["results"]] == [
            "The staging database is called marmot."]
        assert s.call("memory_list", {})["isError"] is False
        failed = s.call("memory_store", {"content": "needs the model"})
        assert failed["isError"] is True and "make setup" in failed["content"][0]["text"]
        code, _ = finish(s)
        assert code == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
