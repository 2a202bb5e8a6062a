"""Malformed MCP traffic at the line level (issue 15): each bad line gets a JSON-RPC error
reply (-32700 for what is not JSON text, -32600 for JSON that is not a valid message or a
line over the 64 MiB limit), with the request's `id` when it can be read, else `null`;
the server keeps serving after each. A notification before `initialize` does not end the
session, and a large valid memory sent with escapes (18.9 MB line) is stored."""

import json

import pytest

from conftest import RawServer

pytestmark = pytest.mark.usefixtures("subcog")


def send_raw(s, data: bytes):
    s.proc.stdin.flush()
    s.proc.stdin.buffer.write(data + b"\n")
    s.proc.stdin.buffer.flush()


def nested(depth):
    v = 0
    for _ in range(depth):
        v = [v]
    return v


def store_line(rid, content_json: str) -> bytes:
    return ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"memory_store",'
            '"arguments":{"content":%s}}}' % (rid, content_json)).encode()


BAD_LINES = [
    # (label, line, code, id)
    ("open brace", b"{", -32700, None),
    ("not json", b"not json", -32700, None),
    ("truncated", b'{"jsonrpc":"2.0","id":41,"method":"tools/ca', -32700, None),
    ("invalid UTF-8", store_line(42, '"caf#"').replace(b"#", b"\xff\xfe"), -32700, 42),
    ("lone surrogate", store_line(43, '"\\ud800"'), -32600, 43),
    ("200 levels deep", json.dumps({"jsonrpc": "2.0", "id": 44, "method": "tools/call",
                                    "params": {"name": "memory_store", "arguments": {
                                        "content": "deep", "metadata": {"m": nested(200)}}}})
     .encode(), -32600, 44),
    ("no method", b'{"jsonrpc":"2.0","id":45}', -32600, 45),
    ("a string id", b'{"jsonrpc":"2.0","id":"x-46","method":7}', -32600, "x-46"),
    ("array", b"[1, 2]", -32600, None),
]


@pytest.mark.parametrize("label,line,code,rid", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_line_gets_an_error_reply_and_the_server_keeps_serving(raw_server, label, line,
                                                                    code, rid):
    s = raw_server()
    s.initialize()
    send_raw(s, line)
    reply = s.read()
    assert reply["jsonrpc"] == "2.0" and "id" in reply, reply
    assert reply["error"]["code"] == code, reply
    assert reply["id"] == rid, reply
    assert s.request("ping")["result"] == {}
    assert s.call("memory_stats", {})["isError"] is False
    code, _, err = s.close()
    assert code == 0, err


def test_invalid_utf8_line_is_a_parse_error_with_its_id(raw_server):
    s = raw_server()
    s.initialize()
    send_raw(s, b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"memory_store",'
                b'"arguments":{"content":"caf\xff\xfe"}}}')
    reply = s.read()
    assert reply["error"]["code"] == -32700 and reply["id"] == 9, reply
    assert "UTF-8" in reply["error"]["message"]
    assert s.request("ping")["result"] == {}


def test_invalid_notifications_get_no_reply(raw_server):
    s = raw_server()
    s.initialize()
    send_raw(s, b'{"jsonrpc":"2.0","method":"notifications/progress","params":"bad"}')
    send_raw(s, b'{"jsonrpc":"2.0","method":"x/unknown"}')
    # The next line on stdout is the ping's reply: nothing was sent for the notifications.
    assert s.request("ping")["result"] == {}


def test_line_over_the_limit_is_refused_and_the_server_keeps_serving(raw_server):
    s = raw_server()
    s.initialize()
    # 64 MiB + 1 byte of a string: refused as it arrives, never buffered whole.
    big = b'{"jsonrpc":"2.0","id":50,"method":"ping","params":{"pad":"' \
        + b"a" * (64 * 1024 * 1024) + b'"}}'
    send_raw(s, big)
    reply = s.read()
    assert reply["error"]["code"] == -32600 and reply["id"] is None, reply
    assert "line limit" in reply["error"]["message"]
    assert s.request("ping")["result"] == {}


def test_a_6_mib_memory_sent_with_escapes_is_stored(raw_server):
    s = raw_server()
    s.initialize()
    # 3 Mi x "é" (2 bytes each in UTF-8): a 6 MiB memory, 18.9 MB as \u00e9 escapes.
    content = "\u00e9" * (3 * 1024 * 1024)
    line = store_line(60, json.dumps(content))
    assert len(line) > 18_000_000
    send_raw(s, line)
    reply = s.read()
    assert reply["id"] == 60 and reply["result"]["isError"] is False, str(reply)[:500]
    rid = reply["result"]["structuredContent"]["id"]
    got = s.call("memory_get", {"id": rid})
    assert got["structuredContent"]["content"] == content


def test_initialized_notification_before_initialize_does_not_end_the_session(db_path):
    s = RawServer(db_path)
    try:
        s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send_raw(s, b"{")
        assert s.read()["error"]["code"] == -32700
        init = s.initialize()["result"]
        assert init["serverInfo"]["name"] == "subcog"
        assert s.request("ping")["result"] == {}
        code, rest, err = s.close()
        assert code == 0 and rest == "", err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_keyword_query_without_words_is_a_tool_error_and_stats_takes_no_arguments(raw_server):
    s = raw_server()
    s.initialize()
    assert s.call("memory_store", {"content": "the unbalanced wheel was fixed"})["isError"] is False
    for q in ["*", "(", "\"", "^ : -"]:
        r = s.call("memory_search", {"query": q, "mode": "keyword"})
        assert r["isError"] is True, (q, r)
        assert "no words" in r["content"][0]["text"], r
    # Words are matched; operators are not interpreted (no FTS5 syntax error to report).
    r = s.call("memory_search", {"query": "\"unbalanced NEAR(", "mode": "keyword"})
    assert r["isError"] is False, r
    assert [m["content"] for m in r["structuredContent"]["results"]] == [
        "the unbalanced wheel was fixed"]
    r = s.call("memory_stats", {"verbose": True})
    assert r["isError"] is True and "verbose" in r["content"][0]["text"], r
    assert s.call("memory_stats", {})["isError"] is False
