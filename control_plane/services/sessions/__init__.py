"""Session Manager: interactive shells, commands and port forwarding to nodes through the
server's relay (docs/sessions.md)."""

from control_plane.services.sessions.service import Preferences, SessionService

__all__ = ["Preferences", "SessionService"]
