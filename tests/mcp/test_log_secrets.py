"""Logs never hold what redaction keeps out of the database: with `RUST_LOG=debug` (which
the README suggests for debugging) the server's stderr has no stored secret or personal
data, although debug logging is on."""

from conftest import child_env

SECRET = "ghp_" + "Zq8Xw2Lm4Np6Rt1Vy3Bc5Df7Gh9Jk0Mn2Pq4"
EMAIL = "carol.diaz@acme-corp.com"


def test_debug_log_has_no_secrets(raw_server):
    s = raw_server(env=child_env(RUST_LOG="debug"))
    s.initialize()
    out = s.call("memory_store", {"content": f"deploy token {SECRET}, owner {EMAIL}",
                                  "metadata": {"password": "hunter2!x"}})
    assert not out.get("isError"), out
    s.request("tools/call", {"name": "no_such_tool", "arguments": {"token": SECRET}})
    code, _, err = s.close()
    assert code == 0, err
    assert "DEBUG" in err, "debug logging is not on, the test would prove nothing"
    for value in (SECRET, EMAIL, "hunter2!x"):
        assert value not in err, f"{value} in the log"
