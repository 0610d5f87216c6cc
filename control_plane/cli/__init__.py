"""``corral``: the operator CLI for a Corral control plane.

Modules stay cheap to import so that ``corral --help`` starts fast: httpx lives only in
:mod:`.client`, rich only inside :mod:`.output`'s functions, cryptography only inside
:mod:`.login`'s and :mod:`.activations`'s functions.
"""
