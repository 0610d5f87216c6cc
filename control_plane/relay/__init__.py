"""The session relay: pairs a session's two websockets (the agent's and the operator's
client's) and passes data-channel frames between them (docs/sessions.md)."""
