# Shared by every maintainer script (POSIX sh).  The build puts this file at the top of each
# script and sets PKG_FORMAT: deb, rpm, apk or arch, with "-upgrade" for the upgrade hooks of
# apk and pacman (they have hooks of their own instead of arguments).  Each format calls the
# scripts differently:
#   deb:  postinst configure [OLD]; prerm remove|upgrade …; postrm remove|purge|upgrade …
#   rpm:  %post/%preun/%postun with $1 = how many versions remain (0 on erase, 2 on upgrade)
#   apk, pacman: post-install/post-upgrade, pre-deinstall (removal only), post-deinstall
# so each script first works out what is happening, then acts; none ever touches the state
# directory on upgrade or plain removal.

corral_systemd() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# install | upgrade | none
corral_install_mode() {
    case "$PKG_FORMAT" in
        deb) if [ "${1:-}" != configure ]; then echo none; elif [ -n "${2:-}" ]; then echo upgrade; else echo install; fi ;;
        rpm) if [ "${1:-1}" -ge 2 ] 2>/dev/null; then echo upgrade; else echo install; fi ;;
        *-upgrade) echo upgrade ;;
        *) echo install ;;
    esac
}

# yes when the package is going away (not replaced by another version)
corral_removing() {
    case "$PKG_FORMAT" in
        deb) if [ "${1:-}" = remove ] || [ "${1:-}" = purge ]; then echo yes; else echo no; fi ;;
        rpm) if [ "${1:-0}" = 0 ]; then echo yes; else echo no; fi ;;
        *-upgrade) echo no ;;
        *) echo yes ;;
    esac
}

corral_openrc() {  # SERVICE: Alpine's init, when the package brought a script for it
    command -v rc-update >/dev/null 2>&1 && [ -x "/etc/init.d/$1" ]
}

# Enable the unit; start (or restart, on upgrade) it only once the service can run: the
# install script (or the operator) starts it after registering / initializing.
corral_service_installed() {  # UNIT MODE READY_FILE
    if corral_openrc "${1%.service}"; then
        if [ "$2" = upgrade ]; then
            rc-service "${1%.service}" -s restart || true
        else
            rc-update add "${1%.service}" default || true
            if [ -e "$3" ]; then rc-service "${1%.service}" start || true; fi
        fi
        return 0
    fi
    corral_systemd || return 0
    systemctl daemon-reload || true
    if [ "$2" = upgrade ]; then
        systemctl try-restart "$1" || true
    else
        systemctl enable "$1" || true
        if [ -e "$3" ]; then systemctl start "$1" || true; fi
    fi
}

corral_service_removing() {  # UNIT
    if corral_openrc "${1%.service}"; then
        rc-service "${1%.service}" -s stop || true
        rc-update del "${1%.service}" default || true
        return 0
    fi
    corral_systemd || return 0
    systemctl disable --now "$1" || true
}
