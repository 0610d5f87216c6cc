if [ "$PKG_FORMAT" = deb ] && [ "${1:-}" = purge ]; then
    rm -rf /var/lib/corral-agent
    rm -f /etc/corral/agent.toml
    rmdir /etc/corral 2>/dev/null || true
fi
if corral_systemd && [ "$(corral_removing "$@")" = yes ]; then
    systemctl daemon-reload || true
fi
