#!/usr/bin/env bash
# Drive the sqlite3 command-line shell with the built subcog extension.
#
#   tests/shell/test_sqlite3_cli.sh
#
# Environment: SUBCOG_EXT (default <repo>/target/release/libsubcog), SQLITE3 (default
# /usr/bin/sqlite3, Debian 12's 3.40.1). Prints one PASS/FAIL line per check and exits
# non-zero if any check failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EXT="${SUBCOG_EXT:-$ROOT/target/release/libsubcog}"
SQLITE3="${SQLITE3:-/usr/bin/sqlite3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
DB="$TMP/cli.db"

pass=0
fail=0
ok()  { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; fail=$((fail + 1)); }

# run DB [sqlite3 options...] < SQL  -> sets OUT, ERR, RC. The extension is loaded first.
run() {
  local db="$1"; shift
  OUT="$( { echo ".load $EXT"; cat; } | "$SQLITE3" -batch -noheader -list "$@" "$db" 2>"$TMP/err")"
  RC=$?
  ERR="$(cat "$TMP/err")"
}

# expect NAME EXPECTED: compares OUT (after run) with EXPECTED exactly, and wants RC = 0.
expect() {
  if [[ $RC -eq 0 && "$OUT" == "$2" ]]; then
    ok "$1"
  else
    bad "$1" "expected: $(printf '%q' "$2")" "got:      $(printf '%q' "$OUT")" "rc=$RC stderr: $ERR"
  fi
}

if [[ ! -x "$SQLITE3" ]]; then echo "FAIL no sqlite3 at $SQLITE3"; exit 1; fi
if [[ ! -e "$EXT" && ! -e "$EXT.so" ]]; then echo "FAIL extension not built: $EXT[.so]"; exit 1; fi
echo "# $("$SQLITE3" --version | cut -d' ' -f1-2), extension $EXT"

# 1. load into the host shell (an old host must get an error, not an abort)
run :memory: <<'SQL'
SELECT json_extract(subcog_info(), '$.dim');
SELECT length(embed('hello world'));
SQL
if [[ $RC -ge 128 ]]; then
  bad "load: sqlite3 died with signal $((RC - 128))" "stderr: $ERR"
  echo "# 0 passed, 1 failed (cannot continue)"; exit 1
fi
expect "load extension, subcog_info() dim and embed() size" $'384\n1536'

# 2. create + insert (model embeds content) into a file database
run "$DB" <<'SQL'
CREATE VIRTUAL TABLE mem USING memories(dim=384, metric=cosine, auto_embed=on);
INSERT INTO mem(content, namespace, tags) VALUES
  ('Our cat Mochi likes to sleep on the windowsill in the afternoon sun.', 'home', '["pets"]'),
  ('Production deploys go through ArgoCD after CI builds the container image.', 'work', '["deploy"]'),
  ('PgBouncer in transaction mode requires disabling prepared statements in asyncpg.', 'work', '[]'),
  ('Quarterly revenue grew twelve percent thanks to the spring sale.', 'work', '[]');
SELECT count(*), sum(length(embedding) = 1536) FROM mem;
SELECT namespace, tags, importance FROM mem WHERE id = 1;
SQL
expect "create table and insert 4 rows with auto-embedding" $'4|4\nhome|["pets"]|0.5'

# 3. the three searches
run "$DB" <<'SQL'
SELECT id FROM mem WHERE embedding MATCH embed('a kitten napping by the window') AND k = 1;
SQL
expect "KNN search (embedding MATCH embed(...) AND k = 1)" "1"

run "$DB" <<'SQL'
SELECT id, score > 0 FROM mem WHERE content MATCH 'pgbouncer' AND k = 5;
SQL
expect "keyword search (content MATCH 'pgbouncer')" "3|1"

run "$DB" <<'SQL'
SELECT id FROM mem WHERE mem MATCH 'how do we deploy to production?' AND k = 1;
SQL
expect "hybrid search (mem MATCH free text)" "2"

run "$DB" <<'SQL'
SELECT id FROM mem WHERE mem MATCH 'what''s "this"? AND OR NOT (*' AND k = 2 AND namespace = 'home';
SQL
expect "hybrid search with FTS5 operators in the text, namespace filter" "1"

run "$DB" <<'SQL'
SELECT id FROM vec_search('mem', embed('sleepy pet'), 1);
SQL
expect "vec_search table function" "1"

# 4. rollback
run "$DB" <<'SQL'
BEGIN;
INSERT INTO mem(content, namespace) VALUES ('zebra quasar xylophone', 'work');
SELECT count(*) FROM mem WHERE content MATCH 'quasar' AND k = 5;
SELECT content FROM mem WHERE embedding MATCH embed('zebra quasar xylophone') AND k = 1;
ROLLBACK;
SELECT count(*) FROM mem WHERE content MATCH 'quasar' AND k = 5;
SELECT count(*) FROM mem WHERE mem MATCH 'zebra quasar xylophone' AND k = 5 AND content LIKE 'zebra%';
SELECT count(*) FROM mem;
SQL
expect "transaction sees its insert; ROLLBACK removes it from all searches" \
  $'1\nzebra quasar xylophone\n0\n0\n4'

# 5. reopen: a new process on the same file
run "$DB" <<'SQL'
SELECT count(*) FROM mem;
SELECT id FROM mem WHERE embedding MATCH embed('a kitten napping by the window') AND k = 1;
SELECT id FROM mem WHERE content MATCH 'revenue' AND k = 1;
SQL
expect "reopen file database: rows and searches intact" $'4\n1\n4'

# 6. bad input: error text and non-zero exit, but the shell keeps going without -bail
run "$DB" <<'SQL'
INSERT INTO mem(content, importance) VALUES ('bad importance', 2.0);
SELECT 'still alive', count(*) FROM mem;
SQL
if [[ $RC -ne 0 && $RC -lt 128 && "$OUT" == "still alive|4" && "$ERR" == *importance* ]]; then
  ok "bad input errors (rc=$RC, message names importance) and the next statement runs"
else
  bad "bad input errors and the next statement runs" "rc=$RC" "stdout: $OUT" "stderr: $ERR"
fi

run "$DB" <<'SQL'
INSERT INTO mem(content, embedding) VALUES ('short vector', X'00000000');
SELECT id FROM mem WHERE embedding MATCH 'not a blob' AND k = 3;
SELECT id FROM mem WHERE embedding MATCH embed('x') AND k = 0;
SELECT 'still alive', count(*) FROM mem;
SQL
nerr="$(grep -ci 'error' <<<"$ERR")"
if [[ $RC -ne 0 && $RC -lt 128 && "$OUT" == "still alive|4" && "$nerr" -ge 3 ]]; then
  ok "wrong-size vector, non-blob MATCH and k = 0 each error; shell survives"
else
  bad "wrong-size vector, non-blob MATCH and k = 0 each error; shell survives" \
    "rc=$RC errors=$nerr" "stdout: $OUT" "stderr: $ERR"
fi

run "$DB" -bail <<'SQL'
INSERT INTO mem(content, tags) VALUES ('bad tags', 'not json');
SELECT 'should not run';
SQL
if [[ $RC -ne 0 && $RC -lt 128 && -z "$OUT" && "$ERR" == *tags* ]]; then
  ok "with -bail a bad input stops the script with rc=$RC"
else
  bad "with -bail a bad input stops the script" "rc=$RC" "stdout: $OUT" "stderr: $ERR"
fi

run "$DB" <<'SQL'
CREATE VIRTUAL TABLE bad USING memories(metric=hamming);
SELECT count(*) FROM sqlite_master WHERE name = 'bad' OR name GLOB 'bad_*';
SQL
if [[ $RC -ne 0 && $RC -lt 128 && "$OUT" == "0" && ( "$ERR" == *metric* || "$ERR" == *hamming* ) ]]; then
  ok "bad CREATE option errors and leaves no tables behind"
else
  bad "bad CREATE option errors and leaves no tables behind" "rc=$RC" "stdout: $OUT" "stderr: $ERR"
fi

# 6b. capture hygiene from the shell: a duplicate lands on its memory, a secret is
# redacted, an expired memory is not found and is purged (in a table of its own)
run "$DB" <<'SQL'
CREATE VIRTUAL TABLE notes USING memories();
INSERT INTO notes(content) VALUES ('The staging database is on host db-stage-2.');
INSERT INTO notes(content) VALUES ('the staging database is on host  db-stage-2.');
SELECT last_insert_rowid(), json_extract(subcog_last_insert('notes'), '$.outcome');
INSERT INTO notes(content) VALUES ('CI token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789');
SELECT content FROM notes WHERE id = 2;
INSERT INTO notes(content, ttl) VALUES ('Deploy freeze until the release', 1);
SELECT count(*) FROM notes;
SQL
expect "dedup lands on the first memory; a GitHub token is redacted" \
  $'1|duplicate\nCI token: [REDACTED:github_token]\n3'
sleep 1.1
run "$DB" <<'SQL'
SELECT count(*) FROM notes WHERE notes MATCH 'deploy freeze' AND k = 5 AND content LIKE 'Deploy%';
SELECT subcog_purge('notes');
SELECT count(*) FROM notes;
DROP TABLE notes;
SQL
expect "an expired memory is not found, then purged" $'0\n1\n2'

# 7. the table is unchanged after all that, and DROP removes the shadow tables
run "$DB" <<'SQL'
SELECT count(*) FROM mem;
DROP TABLE mem;
SELECT count(*) FROM sqlite_master WHERE name = 'mem' OR name GLOB 'mem_*';
SQL
expect "table unchanged by failed statements; DROP TABLE removes shadow tables" $'4\n0'

echo "# $pass passed, $fail failed"
[[ $fail -eq 0 ]]
