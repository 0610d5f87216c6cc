"""The pieces of ``packaging/build`` (stdlib only: it runs before anything is installed)."""
