"""Session Manager on the node: the data channel (datachannel.py) today; the shell, the
interactive command and port forwarding join it, one module each, as docs/sessions.md will
say (issue 14, under way)."""
