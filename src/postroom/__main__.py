"""``python -m postroom``: the command line, where the ``postroom`` script is not on PATH."""

from postroom.cli import main

main()
