"""``python -m subcog ARGS`` is the ``subcog`` console script."""

from ._cli import main

main()
