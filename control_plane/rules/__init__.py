"""Pure domain rules that the server and the operator CLI both apply: no I/O, no framework,
no storage.  The server enforces them; the CLI checks the same rules before it sends a
request, so a mistake is named at once (and the server checks again).

Anything here may import only the standard library, ``control_plane.errors`` and
``agent.wire``/``agent.documents``; tests/unit/test_layering.py checks it.
"""
