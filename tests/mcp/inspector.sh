#!/usr/bin/env bash
# `subcog mcp` driven by the MCP Inspector CLI (npm @modelcontextprotocol/inspector, pinned in
# tests/mcp/package.json + package-lock.json): tools/list, tools/call of every tool, and a bad
# call, which the inspector reports with exit code 5 (the tool returned isError: true).
#
# Installs the inspector with `npm ci` into tests/mcp/node_modules on first run. If that
# fails, this script fails (exit 1) with the reason; set SUBCOG_SKIP_NPM=1 to skip the
# npm-based tests explicitly on a machine without the npm registry.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${SUBCOG_BIN:-$ROOT/target/release/subcog}"
INSPECTOR="$HERE/node_modules/.bin/mcp-inspector"
export npm_config_loglevel=error npm_config_update_notifier=false

if [[ "${SUBCOG_SKIP_NPM:-}" == 1 ]]; then
  echo "inspector: SKIPPED (SUBCOG_SKIP_NPM=1)"
  exit 0
fi
[[ -x "$BIN" ]] || { echo "inspector: $BIN not built (run make build)" >&2; exit 1; }
command -v npm >/dev/null || { echo "inspector: npm not found; install Node.js and npm, or set SUBCOG_SKIP_NPM=1" >&2; exit 1; }

if [[ ! -x "$INSPECTOR" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
  echo "inspector: npm ci (@modelcontextprotocol/inspector)"
  if ! (cd "$HERE" && npm ci --no-audit --no-fund); then
    echo "inspector: FAILED to install @modelcontextprotocol/inspector with npm ci (see above);" \
         "set SUBCOG_SKIP_NPM=1 to skip the npm-based tests" >&2
    exit 1
  fi
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
DB="$TMP/memory.db"
# The inspector keeps a server catalog; keep it out of $HOME.
export MCP_CATALOG_PATH="$TMP/catalog.json"

inspect() { "$INSPECTOR" --cli "$BIN" mcp --db "$DB" "$@"; }
fail() { echo "inspector: FAIL: $*" >&2; exit 1; }
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# tools/list: the fifteen tools, each with an input and an output schema.
inspect --method tools/list > "$TMP/tools.json"
got="$(json "' '.join(sorted(t['name'] for t in d['tools'] if t.get('inputSchema') and t.get('outputSchema')))" < "$TMP/tools.json")"
want="memory_branch memory_context memory_delete memory_diff memory_get memory_history memory_link memory_list memory_merge memory_restore memory_search memory_snapshot memory_stats memory_store memory_update"
[[ "$got" == "$want" ]] || fail "tools/list gave: $got"

# tools/call: store three memories, search, get, update, list, stats, delete.
store() {
  inspect --method tools/call --tool-name memory_store --tool-arg "content=$1" "namespace=$2" \
    | json "d['structuredContent']['id']"
}
id1="$(store 'Deploy the shop with make deploy-prod once CI is green.' project:shop)"
id2="$(store 'The user prefers tabs, width 4, in every Go project.' user)"
id3="$(store 'Alice owns the billing service.' team)"
[[ "$id1" != "$id2" && "$id2" != "$id3" ]] || fail "ids not distinct: $id1 $id2 $id3"

top="$(inspect --method tools/call --tool-name memory_search \
        --tool-arg 'query=how do I ship the shop?' k=3 | json "d['structuredContent']['results'][0]['id']")"
[[ "$top" == "$id1" ]] || fail "search ranked $top first, expected $id1"
top="$(inspect --method tools/call --tool-name memory_search \
        --tool-arg 'query=who is responsible for billing' k=2 mode=vector | json "d['structuredContent']['results'][0]['id']")"
[[ "$top" == "$id3" ]] || fail "vector search ranked $top first, expected $id3"

ns="$(inspect --method tools/call --tool-name memory_get --tool-arg "id=$id2" | json "d['structuredContent']['namespace']")"
[[ "$ns" == user ]] || fail "memory_get: namespace $ns"
imp="$(inspect --method tools/call --tool-name memory_update --tool-arg "id=$id2" importance=0.9 \
        | json "d['structuredContent']['importance']")"
[[ "$imp" == 0.9 ]] || fail "memory_update: importance $imp"
n="$(inspect --method tools/call --tool-name memory_list --tool-arg limit=10 | json "len(d['structuredContent']['memories'])")"
[[ "$n" == 3 ]] || fail "memory_list: $n memories"
inspect --method tools/call --tool-name memory_delete --tool-arg "id=$id3" | json "d['structuredContent']['deleted']" | grep -qx True \
  || fail "memory_delete"
total="$(inspect --method tools/call --tool-name memory_stats | json "d['structuredContent']['total']")"
[[ "$total" == 2 ]] || fail "memory_stats: total $total"

# History: a snapshot, a delete, the diff since the snapshot, a restore to it, the history.
v="$(inspect --method tools/call --tool-name memory_snapshot --tool-arg action=create name=two \
      | json "d['structuredContent']['version']")"
[[ "$v" -ge 5 ]] || fail "memory_snapshot: version $v"
inspect --method tools/call --tool-name memory_delete --tool-arg "id=$id2" > /dev/null
rows="$(inspect --method tools/call --tool-name memory_diff --tool-arg from=two \
         | json "[(r['id'], r['change']) for r in d['structuredContent']['rows']]")"
[[ "$rows" == "[($id2, 'removed')]" ]] || fail "memory_diff: $rows"
changed="$(inspect --method tools/call --tool-name memory_restore --tool-arg to=two \
            | json "d['structuredContent']['recreated']")"
[[ "$changed" == 1 ]] || fail "memory_restore: recreated $changed"
changes="$(inspect --method tools/call --tool-name memory_history --tool-arg "id=$id2" \
            | json "' '.join(v['change'] for v in d['structuredContent']['versions'])")"
[[ "$changes" == "insert update delete restore" ]] || fail "memory_history: $changes"

# A bad call: the tool result has isError, the inspector exits 5, the message is actionable.
set +e
inspect --method tools/call --tool-name memory_get --tool-arg "id=$id3" > "$TMP/bad.json" 2> "$TMP/bad.err"
rc=$?
set -e
[[ $rc == 5 ]] || fail "bad call exited $rc (want 5): $(cat "$TMP/bad.json" "$TMP/bad.err")"
grep -q "no memory with id $id3" "$TMP/bad.json" || fail "bad call message: $(cat "$TMP/bad.json")"
grep -q '"isError": true' "$TMP/bad.json" || fail "bad call: no isError"

echo "inspector: ok (tools/list, tools/call of 11 tools, isError call -> exit 5)"
