"""Files the server serves as they are: install.sh (a copy of packaging/install.sh)."""
