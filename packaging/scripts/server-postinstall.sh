corral_mode=$(corral_install_mode "$@")
if [ "$corral_mode" != none ]; then
    if ! getent passwd corral >/dev/null 2>&1; then
        corral_nologin=$(command -v nologin 2>/dev/null || echo /usr/sbin/nologin)
        if command -v useradd >/dev/null 2>&1; then
            getent group corral >/dev/null 2>&1 || groupadd --system corral
            useradd --system --gid corral --home-dir /var/lib/corral-server --no-create-home \
                --shell "$corral_nologin" --comment "Corral control plane" corral
        else  # busybox (Alpine)
            getent group corral >/dev/null 2>&1 || addgroup -S corral
            adduser -S -D -H -h /var/lib/corral-server -s "$corral_nologin" -G corral corral
        fi
    fi
    mkdir -p /var/lib/corral-server
    chown corral:corral /var/lib/corral-server
    chmod 0700 /var/lib/corral-server
    corral_service_installed corral-server.service "$corral_mode" /var/lib/corral-server/config.toml
fi
