"""``python -m control_plane.cli``: the same as ``corral``."""

from control_plane.cli.main import main

main()
