#!/usr/bin/env bash
# Copies what a package ships into a staging folder, from the outputs of `make build` and
# `make setup` (nothing is compiled here):
#   stage.sh python DEST   DEST/libsubcog.so, DEST/bin/subcog, DEST/model/{model.onnx,tokenizer.json},
#                          DEST/THIRD_PARTY_NOTICES.md
#   stage.sh npm DEST      the same, plus DEST/lib/libonnxruntime.so.1.31.1
# The extension and the binary are stripped of their symbol tables (about 5 MB smaller; the
# dynamic symbols, sqlite3_subcog_init among them, stay). The model, the tokenizer and the
# runtime are the files scripts/setup.sh installed after checking their sha256; it is run
# first (instant when they are present and intact).
set -euo pipefail

kind="${1:?usage: stage.sh python|npm DEST}"
dest="${2:?usage: stage.sh python|npm DEST}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
home="${SUBCOG_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/subcog}"

die() { echo "stage.sh: error: $*" >&2; exit 1; }

ext="$repo/target/release/libsubcog.so"
bin="$repo/target/release/subcog"
[[ -f "$ext" ]] || die "$ext is missing: run \`make build\` first"
[[ -x "$bin" ]] || die "$bin is missing: run \`make build\` first"
"$repo/scripts/setup.sh" >/dev/null   # verifies (or installs) the model, tokenizer and runtime

rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/model"
copy_stripped() {   # copy_stripped SRC DST MODE
  if command -v strip >/dev/null; then strip -o "$2" "$1"; else cp "$1" "$2"; fi
  chmod "$3" "$2"
}
copy_stripped "$ext" "$dest/libsubcog.so" 755
copy_stripped "$bin" "$dest/bin/subcog" 755
install -m 644 "$home/models/all-MiniLM-L6-v2/model.onnx" "$dest/model/model.onnx"
install -m 644 "$home/models/all-MiniLM-L6-v2/tokenizer.json" "$dest/model/tokenizer.json"
install -m 644 "$repo/packaging/THIRD_PARTY_NOTICES.md" "$dest/THIRD_PARTY_NOTICES.md"
case "$kind" in
  python) ;;
  npm)
    mkdir -p "$dest/lib"
    install -m 755 "$home/lib/libonnxruntime.so.1.31.1" "$dest/lib/libonnxruntime.so.1.31.1"
    ;;
  *) die "unknown kind '$kind' (python or npm)" ;;
esac
echo "staged $kind files in $dest ($(du -sh "$dest" | cut -f1))"
