"""CA and certificates, operator tokens, node access tokens."""
