"""hatchling build hook of the `subcog` wheel (see pyproject.toml).

Adds the staged native files (packaging/stage.sh python DIR; DIR is $SUBCOG_STAGE, default
build/stage next to this file) under `subcog/` and tags the wheel for Linux x86_64 with
glibc >= 2.34 (the newest glibc symbol version the extension and the binary use, checked by
tests/packaging). The version is Cargo.toml's (`cargo_version`).
"""

import os
import tomllib
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# py3-none: nothing in the wheel is tied to a Python version or ABI (the extension is loaded
# by SQLite, the binary runs on its own).
TAG = "py3-none-manylinux_2_34_x86_64"
# staged path -> path inside the wheel
FILES = {
    "libsubcog.so": "subcog/libsubcog.so",
    "bin/subcog": "subcog/bin/subcog",
    "model/model.onnx": "subcog/model/model.onnx",
    "model/tokenizer.json": "subcog/model/tokenizer.json",
    "THIRD_PARTY_NOTICES.md": "subcog/THIRD_PARTY_NOTICES.md",
}


def cargo_version():
    """The crate's version from Cargo.toml (the one source of the version)."""
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            raise RuntimeError("subcog ships as a platform wheel only: run `make wheel`")
        stage = Path(os.environ.get("SUBCOG_STAGE") or HERE / "build/stage")
        for src, dst in FILES.items():
            path = stage / src
            if not path.is_file():
                raise RuntimeError(f"{path} is missing: build the wheel with `make wheel` "
                                   "(it stages the files with packaging/stage.sh)")
            build_data["force_include"][str(path)] = dst
        build_data["pure_python"] = False
        build_data["tag"] = TAG
