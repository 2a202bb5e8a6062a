"""The ``subcog`` console script: runs the bundled binary with the installed model.

``subcog mcp`` serves MCP over stdio (``claude mcp add subcog -- subcog mcp``), ``subcog
sql``/``import``/``export`` as documented in the README; every argument is passed on.
"""

import os
import sys

from . import LoadError, binary_path, configure_environment


def main():
    """Replaces this process with the bundled binary (same pid, stdio and signals), after
    :func:`subcog.configure_environment`. Exits with status 1 and a message on stderr when
    the binary is missing or not executable, or the runtime is not installed."""
    exe = binary_path()
    try:
        env = configure_environment(dict(os.environ))
    except LoadError as e:
        sys.exit(f"subcog: {e}")
    if not os.access(exe, os.X_OK):
        sys.exit(f"subcog: the bundled binary {exe} is missing or not executable; "
                 "reinstall the package (`pip install --force-reinstall subcog`)")
    os.execve(exe, ["subcog", *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
