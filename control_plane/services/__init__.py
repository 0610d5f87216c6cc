"""The domain: activation, registration, node presence, the agent channel.  No HTTP here."""
