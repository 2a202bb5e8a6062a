"""Context assembly and links through the built extension: subcog_context,
subcog_context_items, subcog_link, subcog_unlink, subcog_links.

Tokens are counted here with the model's tokenizer.json through the Python `tokenizers`
package (no special tokens, no truncation), independently of the extension's count.
"""

import json
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)

WORDS = ("alice bob carol deploy billing service friday release database migration rate "
         "limit tabs spaces python rust kubernetes pager on-call budget invoice meeting "
         "berlin paris coffee tea review merge branch backup restore token 2024 3.5 42 "
         "naïve café 東京 über émigré x-ray don't (parens) [brackets] {braces} commas, dots.").split()


def open_db(path=":memory:"):
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    return c


def info(c):
    return json.loads(c.execute("SELECT subcog_info()").fetchone()[0])


@pytest.fixture(scope="module")
def counter():
    from tokenizers import Tokenizer
    c = open_db()
    i = info(c)
    c.close()
    if not i["model_present"]:
        pytest.skip("model not installed (make setup)")
    tok = Tokenizer.from_file(i["tokenizer_path"])
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


@pytest.fixture
def conn(counter):
    c = open_db()
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    yield c
    c.close()


def ctx(c, q, budget, **opts):
    args = (q, budget, json.dumps(opts)) if opts else (q, budget)
    marks = ", ?" * (len(args) - 2)
    return c.execute(f"SELECT subcog_context('mem', ?, ?{marks})", args).fetchone()[0]


def items(c, q, budget, **opts):
    return c.execute("SELECT id, tokens, score, reason FROM subcog_context_items('mem', ?, ?, ?)",
                     (q, budget, json.dumps(opts))).fetchall()


def add(c, content, **cols):
    cols["content"] = content
    names = ", ".join(cols)
    cur = c.execute(f"INSERT INTO mem({names}) VALUES ({', '.join('?' * len(cols))})",
                    list(cols.values()))
    return cur.lastrowid


def fill(c, facts):
    c.execute("BEGIN")
    ids = [add(c, f) for f in facts]
    c.execute("COMMIT")
    return ids


FACTS = [
    "Alice owns the billing service and its on-call rota",
    "Bob deploys the shop on Fridays after the review",
    "The API rate limit is 100 requests per minute per key",
    "Carol prefers tabs, width 4, in every Go project",
    "The staging database is restored from backup every night",
    "Dave is learning Rust and asked for a mentor",
]


def test_budget_never_exceeded_over_random_texts_and_budgets(conn, counter):
    rng = random.Random(12)
    texts = set()
    while len(texts) < 60:
        texts.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 70))))
    conn.execute("BEGIN")
    for i, t in enumerate(sorted(texts)):
        add(conn, t, namespace=rng.choice(["a", "b", "c"]), created_at=1_700_000_000_000 + i * 40_000_000)
    conn.execute("COMMIT")
    contents = [r[0] for r in conn.execute("SELECT content FROM mem")]
    smallest = min(counter(t) for t in contents)
    budgets = [0, 1, 2, 3, smallest - 1, smallest, smallest + 5] + [rng.randint(1, 900) for _ in range(40)]
    for n, budget in enumerate(budgets):
        budget = max(budget, 0)
        fmt = ["text", "markdown", "json"][n % 3]
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        text = ctx(conn, q, budget, format=fmt, neighbours=n % 2, diversity=0.3 * (n % 2))
        assert counter(text) <= budget, (budget, fmt, text)
        chosen = items(conn, q, budget, format=fmt, neighbours=n % 2, diversity=0.3 * (n % 2))
        if fmt == "json":
            body = json.loads(text)["context"] if text else []
            assert sorted(m["id"] for m in body) == sorted(i for i, *_ in chosen)
            got = {m["id"]: m["content"] for m in body}
            stored = dict(conn.execute("SELECT id, content FROM mem"))
            assert all(stored[i] == c for i, c in got.items())  # verbatim
        else:
            stored = dict(conn.execute("SELECT id, content FROM mem"))
            for i, *_ in chosen:
                assert stored[i] in text  # verbatim, never truncated
        # Too small for any memory (with its header): empty, never a truncated memory.
        if budget < smallest:
            assert text == "" and chosen == []


def test_small_budgets_give_the_empty_text(conn):
    fill(conn, FACTS)
    assert ctx(conn, "who owns billing?", 0) == ""
    assert ctx(conn, "who owns billing?", 3) == ""
    assert "Alice owns the billing service" in ctx(conn, "who owns billing?", 40)


def test_layout_and_determinism(tmp_path, counter):
    path = str(tmp_path / "m.db")
    c = open_db(path)
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    c.execute("BEGIN")
    for i, f in enumerate(FACTS):
        add(c, f, namespace="team" if i % 2 else "user", created_at=1_700_000_000_000 + i * 1000)
    c.execute("COMMIT")
    q = "who deploys and who owns billing?"
    first = c.execute("SELECT subcog_context('mem', ?, 200)", (q,)).fetchone()[0]
    assert first == c.execute("SELECT subcog_context('mem', ?, 200)", (q,)).fetchone()[0]
    c.close()
    c = open_db(path)
    assert first == c.execute("SELECT subcog_context('mem', ?, 200)", (q,)).fetchone()[0]
    lines = first.split("\n")
    headers = [l for l in lines if l.startswith("# ")]
    assert headers and all(h.endswith(", 2023-11-14") for h in headers), first
    # Inside a namespace, memories come in the order they were stored.
    for ns in ("team", "user"):
        start = lines.index(f"# {ns}, 2023-11-14")
        block = []
        for l in lines[start + 1:]:
            if l.startswith("# "):
                break
            block.append(l)
        order = [FACTS.index(l) for l in block]
        assert order == sorted(order), first
    md = c.execute("""SELECT subcog_context('mem', ?, 200, '{"format":"markdown"}')""", (q,)).fetchone()[0]
    assert md.startswith("## ") and "\n- " in md
    c.close()


def test_namespaces_are_respected(conn):
    a = add(conn, "Alice owns the billing service", namespace="work")
    b = add(conn, "Alice owns a billing cat named Invoice", namespace="home")
    conn.execute("SELECT subcog_link('mem', ?, ?, 'relates')", (a, b))
    text = ctx(conn, "what does alice own?", 500, namespace="work")
    assert "billing service" in text and "Invoice" not in text
    both = ctx(conn, "what does alice own?", 500)
    assert "billing service" in both and "Invoice" in both
    assert "# work," in both and "# home," in both


def test_expired_and_superseded_memories_are_left_out(conn):
    fill(conn, FACTS)
    old = add(conn, "The deploy freeze lasts until Friday", expires_at=int(time.time() * 1000) - 1000)
    older = add(conn, "The API rate limit is 100 requests per minute for the search API")
    newer = add(conn, "The API rate limit is 500 requests per minute for the search API")
    sup = conn.execute("SELECT superseded_by FROM mem WHERE id = ?", (older,)).fetchone()[0]
    assert sup == newer
    for q in ("deploy freeze", "search API rate limit"):
        text = ctx(conn, q, 2000, neighbours=2)
        ids = [r[0] for r in items(conn, q, 2000, neighbours=2)]
        assert "deploy freeze" not in text and old not in ids
        assert older not in ids and "100 requests per minute for the search" not in text
    assert newer in [r[0] for r in items(conn, "search API rate limit", 2000)]
    # A user `supersedes` link hides its target just the same.
    bob = conn.execute("SELECT id FROM mem WHERE content LIKE 'Bob%'").fetchone()[0]
    assert conn.execute("SELECT subcog_link('mem', ?, ?, 'supersedes')", (newer, bob)).fetchone()[0] == 1
    assert bob not in [r[0] for r in items(conn, "who deploys the shop on fridays", 2000)]


def test_links_are_followed_one_hop_and_removed_with_their_memories(conn):
    ids = fill(conn, FACTS)
    alice, rust = ids[0], ids[5]
    extra = add(conn, "Zebra crossings are painted white", namespace="misc")
    far = add(conn, "Quokkas live on Rottnest Island", namespace="misc")
    assert conn.execute("SELECT subcog_link('mem', ?, ?, 'derived_from', 0.5)", (alice, extra)).fetchone()[0] == 1
    assert conn.execute("SELECT subcog_link('mem', ?, ?, 'derived_from', 0.7)", (alice, extra)).fetchone()[0] == 0
    conn.execute("SELECT subcog_link('mem', ?, ?, 'relates')", (extra, far))
    links = conn.execute("SELECT src, dst, kind, weight FROM subcog_links('mem', ?)", (extra,)).fetchall()
    assert links == [(alice, extra, "derived_from", 0.7), (extra, far, "relates", 1.0)]
    got = {r[0]: r[3] for r in items(conn, "who owns billing?", 60)}
    assert got.get(alice, "").startswith("search #1")
    assert got.get(extra) == f"link derived_from #{alice}"
    assert far not in got or not got[far].startswith("link")  # two hops away: not by link
    # Deleting a memory removes its links both ways.
    conn.execute("DELETE FROM mem WHERE id = ?", (extra,))
    assert conn.execute("SELECT count(*) FROM subcog_links('mem', ?)", (alice,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM subcog_links('mem', ?)", (far,)).fetchone()[0] == 0
    conn.execute("SELECT subcog_link('mem', ?, ?, 'my own kind')", (alice, rust))
    assert conn.execute("SELECT subcog_unlink('mem', ?, ?, 'other')", (alice, rust)).fetchone()[0] == 0
    assert conn.execute("SELECT subcog_unlink('mem', ?, ?)", (alice, rust)).fetchone()[0] == 1


def test_contradicting_pairs_are_marked(conn):
    a = add(conn, "The office is in Berlin")
    b = add(conn, "The office moved to Paris")
    conn.execute("SELECT subcog_link('mem', ?, ?, 'contradicts')", (b, a))
    text = ctx(conn, "where is the office?", 200)
    assert f"[#{a} contradicts #{b}] The office is in Berlin" in text
    assert f"[#{b} contradicts #{a}] The office moved to Paris" in text
    js = json.loads(ctx(conn, "where is the office?", 200, format="json"))
    assert {m["id"]: m.get("contradicts") for m in js["context"]} == {a: [b], b: [a]}
    reasons = {r[0]: r[3] for r in items(conn, "where is the office?", 200)}
    assert reasons[a].endswith(f"contradicts #{b}")


def test_links_follow_rename_vacuum_rollback_and_drop(tmp_path, counter):
    c = open_db(str(tmp_path / "l.db"))
    c.execute("CREATE VIRTUAL TABLE mem USING memories(auto_embed=off, dim=2)")
    c.execute("INSERT INTO mem(id, content, embedding) VALUES (1, 'a', vec_f32('[1,0]')), "
              "(2, 'b', vec_f32('[0,1]')), (3, 'c', vec_f32('[1,1]'))")
    c.execute("SELECT subcog_link('mem', 1, 2, 'part_of')")
    c.execute("BEGIN")
    c.execute("SELECT subcog_link('mem', 1, 3, 'relates')")
    c.execute("ROLLBACK")
    assert c.execute("SELECT dst, kind FROM subcog_links('mem', 1)").fetchall() == [(2, "part_of")]
    c.execute("SAVEPOINT s")
    c.execute("SELECT subcog_unlink('mem', 1, 2)")
    c.execute("ROLLBACK TO s")
    c.execute("RELEASE s")
    c.execute("ALTER TABLE mem RENAME TO notes")
    assert c.execute("SELECT dst FROM subcog_links('notes', 1)").fetchall() == [(2,)]
    c.execute("VACUUM")
    assert c.execute("SELECT dst FROM subcog_links('notes', 2)").fetchall() == [(2,)]
    c.execute("UPDATE notes SET id = 7 WHERE id = 2")
    assert c.execute("SELECT dst FROM subcog_links('notes', 1)").fetchall() == [(7,)]
    c.execute("DROP TABLE notes")
    assert c.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'notes_links%'").fetchone()[0] == 0
    c.close()


def test_as_of_gives_the_context_of_that_moment(conn):
    """A context as of a snapshot, a version or a time equals the context computed then,
    whatever changed since: memories added, updated, deleted, superseded, links made and
    removed (every option that reads rows, links or neighbours)."""
    ids = fill(conn, FACTS)
    alice, bob, limit = ids[0], ids[1], ids[2]
    conn.execute("SELECT subcog_link('mem', ?, ?, 'relates')", (alice, ids[4]))
    conn.execute("SELECT subcog_link('mem', ?, ?, 'contradicts')", (limit, ids[3]))
    questions = ["who owns billing?", "what is the API rate limit?", "when does Bob deploy?"]
    variants = [{}, {"neighbours": 1}, {"format": "json"}, {"namespace": "default"}]

    def state():
        return [(ctx(conn, q, b, **o), items(conn, q, b, **o))
                for q in questions for b in (30, 200) for o in variants]

    before = state()
    snap = conn.execute("SELECT subcog_snapshot('mem', 'before')").fetchone()[0]
    version = conn.execute("SELECT subcog_version('mem')").fetchone()[0]
    time.sleep(0.01)
    moment = int(time.time() * 1000)
    time.sleep(0.01)
    # Change everything the contexts above read.
    add(conn, "Alice handed the billing service to Erin in March")
    add(conn, "The API rate limit is 500 requests per minute per key")  # supersedes `limit`?
    conn.execute("UPDATE mem SET content = 'Bob deploys the shop on Mondays now' WHERE id = ?", (bob,))
    conn.execute("DELETE FROM mem WHERE id = ?", (ids[4],))
    conn.execute("SELECT subcog_unlink('mem', ?, ?)", (limit, ids[3]))
    conn.execute("SELECT subcog_link('mem', ?, ?, 'relates')", (alice, ids[5]))
    after = state()
    assert after != before  # the changes show now
    for target in ("before", snap, moment):
        for i, (q, b, o) in enumerate((q, b, o) for q in questions for b in (30, 200) for o in variants):
            then = {**o, "as_of": target}
            assert (ctx(conn, q, b, **then), items(conn, q, b, **then)) == before[i], (target, q, b, o)
    assert version == snap
    # as_of now (the current version) is the context now.
    now = conn.execute("SELECT subcog_version('mem')").fetchone()[0]
    assert ctx(conn, questions[0], 200, as_of=now) == ctx(conn, questions[0], 200)


@pytest.mark.parametrize("sql, message", [
    ("SELECT subcog_context('mem', 'x', -1)", "budget_tokens): expected an integer in 0..=1000000, got -1"),
    ("SELECT subcog_context('mem', 'x', 'lots')", "budget_tokens): expected an INTEGER, got TEXT 'lots'"),
    ("SELECT subcog_context('nope', 'x', 10)", "not a memories table: 'nope'"),
    ("SELECT subcog_context(3, 'x', 10)", "expected the table name as TEXT, got INTEGER"),
    ("SELECT subcog_context('mem', '  ', 10)", "query): expected a non-empty question"),
    ("SELECT subcog_context('mem', NULL, 10)", "query): expected TEXT, got NULL"),
    ("SELECT subcog_context('mem', 'x', 10, '{')", "options): expected a JSON object, got '{'"),
    ("SELECT subcog_context('mem', 'x', 10, '[1]')", "options): expected a JSON object, got '[1]'"),
    ("SELECT subcog_context('mem', 'x', 10, '{\"budget\": 1}')", "unknown option 'budget'; expected one of"),
    ("SELECT subcog_context('mem', 'x', 10, '{\"format\": \"xml\"}')", "format: expected \"text\""),
    ("SELECT subcog_context('mem', 'x', 10, '{\"as_of\": true}')", "as_of: expected a snapshot name"),
    ("SELECT subcog_context('mem', 'x', 10, '{\"as_of\": \"nope\"}')", "no snapshot"),
    ("SELECT subcog_context('mem', 'x', 10, '{\"as_of\": 999}')", "as_of"),
    ("SELECT * FROM subcog_context_items('mem', 'x', -5)", "subcog_context_items(budget_tokens)"),
    ("SELECT * FROM subcog_context_items('mem')", "the argument query is required"),
    ("SELECT subcog_link('mem', 1, 99, 'relates')", "subcog_link(dst_id): no memory with id 99"),
    ("SELECT subcog_link('mem', 1, 1, 'relates')", "cannot be linked to itself"),
    ("SELECT subcog_link('mem', 1, 2, '')", "subcog_link(kind): expected a non-empty name"),
    ("SELECT subcog_link('mem', 1, 2, 'relates', 'heavy')", "subcog_link(weight): expected a finite number"),
    ("SELECT subcog_link('mem', 'one', 2, 'relates')", "subcog_link(src_id): expected an INTEGER"),
    ("SELECT * FROM subcog_links('nope', 1)", "not a memories table: 'nope'"),
])
def test_bad_input_is_a_clear_error(conn, sql, message):
    fill(conn, FACTS[:2])
    with pytest.raises(sqlite3.Error) as e:
        conn.execute(sql).fetchall()
    assert message in str(e.value)
