"""The history tools over `subcog serve`, per token: history and diffs show only the
namespaces a token reads (another namespace's ids are "not found", word for word as a
missing id), snapshots need a token that writes, and the tools that change or fork every
namespace at once (restore, snapshot drop, branch, merge) need an admin token that writes
every namespace. Every refusal is a tool error that changes nothing."""

from conftest import add_token, integrity


def test_history_tools_per_token(tmp_path, serve):
    tokens = tmp_path / "tokens.json"
    tok = {
        "a": add_token(tokens, "team-a", write="team-a"),
        "b": add_token(tokens, "team-b", write="team-b"),
        "ro": add_token(tokens, "auditor", read="team-a"),
        "stats": add_token(tokens, "stats", read="*", admin=True),
        "admin": add_token(tokens, "ops", read="*", write="*", admin=True),
    }
    s = serve(tokens=tokens)
    a = [s.call(tok["a"], "memory_store", content=c, namespace="team-a")["id"]
         for c in ["Team A deploys billing on Tuesdays.", "Team A's pager rota is in the wiki."]]
    b = [s.call(tok["b"], "memory_store", content="Team B ships the app every Thursday.",
                namespace="team-b")["id"]]
    snap = s.call(tok["a"], "memory_snapshot", action="create", name="start")
    assert snap["version"] == 3
    s.call(tok["a"], "memory_update", id=a[0], content="Team A deploys billing on Wednesdays.")
    s.call(tok["b"], "memory_delete", id=b[0])

    # memory_history: the caller's namespaces only; another team's id is "not found".
    assert [v["change"] for v in s.call(tok["a"], "memory_history", id=a[0])["versions"]] == [
        "insert", "update"]
    assert s.call(tok["ro"], "memory_history", id=a[0])["versions"][1]["after"]["content"] == \
        "Team A deploys billing on Wednesdays."
    missing = s.error(tok["b"], "memory_history", id=999)
    assert missing.startswith("no memory with id 999 in the history")
    assert s.error(tok["b"], "memory_history", id=a[0]) == missing.replace("999", str(a[0]))
    assert s.error(tok["a"], "memory_history", id=b[0]) == missing.replace("999", str(b[0]))
    # A namespace the token writes but may not read: forbidden.
    wo = add_token(tokens, "writer", read="team-b", write="team-a,team-b")
    s.hup()
    s.wait_log("SIGHUP: 6 tokens reloaded")
    assert s.error(wo, "memory_history", id=a[0]).startswith(
        'forbidden: token "writer" may not read namespace "team-a"')

    # memory_diff: rows of readable namespaces only; the admin sees all.
    rows = s.call(tok["a"], "memory_diff", **{"from": "start"})
    assert [(r["id"], r["change"]) for r in rows["rows"]] == [(a[0], "changed")]
    assert rows["total"] == 1 and rows["truncated"] is False
    assert [(r["id"], r["change"]) for r in s.call(tok["b"], "memory_diff", **{"from": "start"})["rows"]] \
        == [(b[0], "removed")]
    assert s.call(tok["ro"], "memory_diff", **{"from": "start"})["total"] == 1
    every = s.call(tok["admin"], "memory_diff", **{"from": "start"})
    assert {r["id"] for r in every["rows"]} == {a[0], b[0]}

    # Snapshots: listing is open, creating needs a token that writes, dropping an admin.
    assert [x["name"] for x in s.call(tok["ro"], "memory_snapshot", action="list")["snapshots"]] \
        == ["start"]
    assert s.error(tok["ro"], "memory_snapshot", action="create", name="ro").startswith(
        'forbidden: token "auditor" may not create a snapshot')
    for t in ["a", "stats"]:
        msg = s.error(tok[t], "memory_snapshot", action="drop", name="start")
        assert msg.startswith("forbidden:") and "admin" in msg, msg
    # Restore, branch and merge: an admin token that writes every namespace.
    for t, name in [("a", "team-a"), ("b", "team-b"), ("ro", "auditor"), ("stats", "stats")]:
        for tool, args in [("memory_restore", {"to": "start"}),
                           ("memory_branch", {"name": "exp"}),
                           ("memory_merge", {"branch": "exp"})]:
            msg = s.error(tok[t], tool, **args)
            assert msg.startswith(f'forbidden: token "{name}" may not ') and \
                "admin token that writes every namespace" in msg, (t, tool, msg)
    # Nothing changed by the refusals.
    assert s.call(tok["admin"], "memory_diff", **{"from": "start"})["rows"] == every["rows"]
    assert [x["name"] for x in s.call(tok["a"], "memory_snapshot", action="list")["snapshots"]] \
        == ["start"]

    # The admin restores: team-a's change is undone and team-b's memory is back.
    r = s.call(tok["admin"], "memory_restore", to="start")
    assert (r["changed"], r["reverted"], r["recreated"]) == (2, 1, 1)
    assert s.call(tok["b"], "memory_get", id=b[0])["namespace"] == "team-b"
    assert s.call(tok["a"], "memory_get", id=a[0])["content"] == "Team A deploys billing on Tuesdays."
    assert s.call(tok["admin"], "memory_snapshot", action="drop", name="start")["version"] == 3
    assert integrity(s.db)["ok"]
    log = s.log()
    assert 'token=team-b tool="memory_history" outcome="not found"' in log
    assert 'token=team-a tool="memory_restore" outcome="forbidden"' in log
    assert 'token=ops tool="memory_restore" outcome="ok"' in log
    assert "Wednesdays" not in log
