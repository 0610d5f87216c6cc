corral_mode=$(corral_install_mode "$@")
if [ "$corral_mode" != none ]; then
    mkdir -p /var/lib/corral-agent
    chmod 0700 /var/lib/corral-agent
    # The agent reads agent.toml in its state dir: the packaged one is /etc/corral/agent.toml.
    if [ ! -e /var/lib/corral-agent/agent.toml ] && [ ! -L /var/lib/corral-agent/agent.toml ]; then
        ln -s /etc/corral/agent.toml /var/lib/corral-agent/agent.toml
    fi
    # Session Manager's default run-as user (the server's session_run_as_default_user), as
    # SSM's agent makes ssm-user: an ordinary user with a home and a shell, its password
    # locked, no sudo.  Kept on removal (Debian policy: files it owns may remain).
    if ! getent passwd corral-user >/dev/null 2>&1; then
        corral_shell=/bin/sh
        [ -x /bin/bash ] && corral_shell=/bin/bash
        if command -v useradd >/dev/null 2>&1; then
            useradd --create-home --home-dir /home/corral-user --shell "$corral_shell" \
                --comment "Corral sessions" corral-user || true
        else  # busybox (Alpine)
            adduser -D -h /home/corral-user -s "$corral_shell" corral-user || true
        fi
    fi
    corral_service_installed corral-agent.service "$corral_mode" /var/lib/corral-agent/state.json
fi
