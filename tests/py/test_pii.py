"""The `pii` table option through the built extension: payment card numbers (Luhn), US
SSNs, e-mail addresses and phone numbers are redacted by default (in every shadow table),
refused with `pii=reject`, and stored as given with `pii=allow`; the `secrets` option is
independent of it.
"""

import os
import sqlite3
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)

# 4111 1111 1111 1111 is Visa's published test number (Luhn-valid).
CARD = "4111 1111 1111 1111"
SSN = "123-45-6789"
EMAIL = "alice.nguyen@acme-corp.com"
PHONE = "+1 415 555 2671"
CONTENT = f"Alice ({EMAIL}, {PHONE}) paid with {CARD}; SSN {SSN} is on file"
PII = [CARD, SSN, EMAIL, PHONE]


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    yield c
    c.close()


def vec():
    return struct.pack("<3f", 1.0, 0.0, 0.0)


def dump(c, table):
    names = [r[0] for r in c.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND (name = ? OR name LIKE ?)",
        (table, f"{table}_%"))]
    return "\n".join(str(v) for n in names for row in c.execute(f'SELECT * FROM "{n}"') for v in row)


def test_default_redacts_pii_everywhere(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    assert dict(conn.execute("SELECT key, value FROM mem_config"))["pii"] == "redact"
    conn.execute("INSERT INTO mem(content, metadata, tags, embedding) VALUES (?, ?, ?, ?)",
                 (CONTENT, f'{{"contact": "{EMAIL}", "n": 3}}', f'["{PHONE}"]', vec()))
    content, metadata, tags = conn.execute("SELECT content, metadata, tags FROM mem").fetchone()
    assert content == ("Alice ([REDACTED:email], [REDACTED:phone_number]) paid with "
                       "[REDACTED:payment_card]; SSN [REDACTED:us_ssn] is on file")
    assert metadata == '{"contact":"[REDACTED:email]","n":3}'
    assert tags == '["[REDACTED:phone_number]"]'
    everything = dump(conn, "mem")
    for value in PII:
        assert value not in everything, value
    assert conn.execute("SELECT count(*) FROM mem WHERE content MATCH 'nguyen'").fetchone()[0] == 0
    # UPDATE is scrubbed too.
    conn.execute("UPDATE mem SET content = ?", (f"new address {EMAIL}",))
    assert conn.execute("SELECT content FROM mem").fetchone()[0] == "new address [REDACTED:email]"


def test_numbers_that_are_not_pii_are_kept(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    text = ("order 4111111111111112 (fails Luhn), id 000-12-3456 (no SSN has area 000), "
            "git@github.com:acme/api.git, released 2024-05-07, ip 192.168.100.200")
    conn.execute("INSERT INTO mem(content, embedding) VALUES (?, ?)", (text, vec()))
    assert conn.execute("SELECT content FROM mem").fetchone()[0] == text


def test_reject_names_the_column_and_kinds(conn):
    conn.execute("CREATE VIRTUAL TABLE rej USING memories(dim=3, auto_embed=off, pii=reject)")
    with pytest.raises(sqlite3.Error) as e:
        conn.execute("INSERT INTO rej(content, embedding) VALUES (?, ?)", (CONTENT, vec()))
    msg = str(e.value)
    assert "column content: contains personal data" in msg, msg
    assert "email, phone_number, payment_card, us_ssn" in msg and "pii=reject" in msg, msg
    assert all(v not in msg for v in PII), msg
    with pytest.raises(sqlite3.Error, match="column metadata: contains personal data \\(email\\)"):
        conn.execute("INSERT INTO rej(content, metadata, embedding) VALUES ('x', ?, ?)",
                     (f'{{"to": "{EMAIL}"}}', vec()))
    assert conn.execute("SELECT count(*) FROM rej").fetchone()[0] == 0
    assert EMAIL not in dump(conn, "rej")
    # Secrets keep their own policy (redact) under pii=reject.
    conn.execute("INSERT INTO rej(content, embedding) VALUES (?, ?)",
                 ("db at postgres://bob:hunter22@db:5432/app", vec()))
    assert "hunter22" not in conn.execute("SELECT content FROM rej").fetchone()[0]


def test_allow_stores_pii_as_given(conn):
    conn.execute("CREATE VIRTUAL TABLE ok USING memories(dim=3, auto_embed=off, pii=allow)")
    conn.execute("INSERT INTO ok(content, embedding) VALUES (?, ?)",
                 (CONTENT + " via postgres://bob:hunter22@db/app", vec()))
    content = conn.execute("SELECT content FROM ok").fetchone()[0]
    assert content.startswith(CONTENT)
    assert "hunter22" not in content  # secrets=redact still applies
    assert dict(conn.execute("SELECT key, value FROM ok_config"))["pii"] == "allow"


def test_bad_value_is_an_error(conn):
    with pytest.raises(sqlite3.Error, match="memories option pii: expected one of redact, reject, allow; got 'mask'"):
        conn.execute("CREATE VIRTUAL TABLE bad USING memories(dim=3, pii=mask)")
