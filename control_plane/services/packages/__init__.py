"""Package distribution (docs/install.md "Serving packages"): the agent and server packages
the server serves at ``/v1/packages/...``, the Ed25519-signed manifest of their checksums, and
the check that an agent upgrade names a version the server has.

Modules: ``names`` (the file-name contract), ``versions`` (comparing versions), ``catalog``
(scanning and hashing, cached), ``signing`` (the key), ``manifest``, ``access`` (an
activation as a download credential), ``updates`` (the upgrade pre-check), ``service``.
"""

from control_plane.services.packages.service import PackageService, package_dirs

__all__ = ["PackageService", "package_dirs"]
