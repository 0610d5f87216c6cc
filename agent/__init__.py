"""Corral agent: the daemon that runs on every managed node.

It imports nothing from ``control_plane``; ``agent.wire`` is the vocabulary both sides share.
"""

import sys

__version__ = "0.1.0"

# httpx imports its own command-line tool (click, rich, pygments: ~10 MB and 50 ms) whenever
# those happen to be installed, as they are beside the operator CLI.  Nothing of ours uses it;
# blocking that one optional import keeps the daemon small.  httpx guards it with ImportError.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
