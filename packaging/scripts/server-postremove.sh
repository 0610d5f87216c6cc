# Purge removes the server's data (its database, CA and keys): dpkg --purge means exactly that.
# The corral user stays (Debian policy: files it owned may remain elsewhere).
if [ "$PKG_FORMAT" = deb ] && [ "${1:-}" = purge ]; then
    rm -rf /var/lib/corral-server
fi
if corral_systemd && [ "$(corral_removing "$@")" = yes ]; then
    systemctl daemon-reload || true
fi
