#!/bin/sh
# Corral agent installer (docs/install.md "The install script").
#
#   curl -fsSL --cacert ca.pem https://corral:8443/install.sh \
#     | sudo sh -s -- --id ID --code CODE --ca-hash sha256:HEX [--name NAME]
#
# Detects the distribution and architecture, downloads the newest corral-agent package for
# them from the Corral server (no internet needed), verifies the server's Ed25519-signed
# manifest and the package's sha256 against it, installs it with the native package manager,
# registers the node with the activation, and starts the service.  Running it again is
# harmless: an installed version is kept, a registered node is not registered again.
# Anything that does not verify installs nothing.
#
# POSIX sh (dash, busybox ash, bash).  Needs: curl, openssl (3.0 or later), sha256sum.

set -eu

# The server writes the URL it served this script from here (GET /install.sh).
SERVED_FROM=""

STATE_DIR=/var/lib/corral-agent
KEY_FILE="$STATE_DIR/package-signing.pem"
SUPPORTED="Debian, Ubuntu, RHEL/Fedora family, SUSE, Alpine, Arch"

die() {
    printf 'corral-install: error: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'corral-install: %s\n' "$*"
}

usage() {
    cat <<'EOF'
usage: install.sh --id ACTIVATION_ID --code ACTIVATION_CODE --ca-hash sha256:HEX
                  [--server https://HOST:PORT] [--name NODE_NAME] [--version VERSION]

  --id, --code   the activation (corral activations create); tags come from it
  --ca-hash      the hash of the server's CA certificate (corral-server init prints it)
  --server       the Corral server (default: where this script was downloaded from)
  --name         the node's name (default: the activation's, else the hostname)
  --version      install this corral-agent version (default: the newest the server has)
EOF
}

ACT_ID=""
ACT_CODE=""
CA_HASH=""
SERVER="$SERVED_FROM"
NODE_NAME=""
WANT_VERSION=""

need_value() {
    [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --id) need_value "$1" "$#"; ACT_ID=$2; shift 2 ;;
        --code) need_value "$1" "$#"; ACT_CODE=$2; shift 2 ;;
        --ca-hash) need_value "$1" "$#"; CA_HASH=$2; shift 2 ;;
        --server) need_value "$1" "$#"; SERVER=$2; shift 2 ;;
        --name) need_value "$1" "$#"; NODE_NAME=$2; shift 2 ;;
        --version) need_value "$1" "$#"; WANT_VERSION=$2; shift 2 ;;
        --id=*) ACT_ID=${1#*=}; shift ;;
        --code=*) ACT_CODE=${1#*=}; shift ;;
        --ca-hash=*) CA_HASH=${1#*=}; shift ;;
        --server=*) SERVER=${1#*=}; shift ;;
        --name=*) NODE_NAME=${1#*=}; shift ;;
        --version=*) WANT_VERSION=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

[ -n "$ACT_ID" ] || die "--id is required (the activation id)"
[ -n "$ACT_CODE" ] || die "--code is required (the activation code)"
[ -n "$CA_HASH" ] || die "--ca-hash is required (sha256:HEX of the server's CA certificate)"
[ -n "$SERVER" ] || die "--server is required (https://HOST:PORT of the Corral server)"
SERVER=${SERVER%/}

case "$ACT_ID$ACT_CODE" in
    *[!A-Za-z0-9-]*) die "--id and --code take letters, digits and '-' only" ;;
esac
case "$CA_HASH" in
    sha256:*) ;;
    *) die "--ca-hash must look like sha256:HEX" ;;
esac
HASH_HEX=${CA_HASH#sha256:}
case "$HASH_HEX" in
    *[!0-9a-f]*) die "--ca-hash must look like sha256:HEX (lowercase hex)" ;;
esac
[ "${#HASH_HEX}" -eq 64 ] || die "--ca-hash must hold 64 hex digits"
case "$SERVER" in
    https://*) ;;
    *) die "--server must be an https:// URL" ;;
esac
case "$SERVER" in
    *[!A-Za-z0-9.:/\[\]-]*) die "--server must be https://HOST[:PORT]" ;;
esac
case "$WANT_VERSION" in
    *[!0-9A-Za-z.+~-]*) die "--version takes a version such as 0.2.0" ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (curl ... | sudo sh -s -- ...)"

for tool in curl openssl sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed; install it first"
done
# Ed25519 signatures verify with OpenSSL 3's pkeyutl -rawin; older ones cannot.
OPENSSL_VERSION=$(openssl version 2>/dev/null || true)
case "$OPENSSL_VERSION" in
    "OpenSSL "[3-9].*) ;;
    *) die "OpenSSL 3.0 or later is needed to verify the packages' signature" \
        "(found: ${OPENSSL_VERSION:-none})" ;;
esac

# --- the distribution and architecture ----------------------------------------------------

os_field() {
    # One field of os-release, read without executing the file.
    sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | tr -d "\"'"
}

OS_RELEASE=/etc/os-release
[ -r "$OS_RELEASE" ] || OS_RELEASE=/usr/lib/os-release
[ -r "$OS_RELEASE" ] || die "unsupported distribution unknown (no /etc/os-release); supported: $SUPPORTED"
OS_ID=$(os_field ID)
OS_LIKE=$(os_field ID_LIKE)

FORMAT=""
for word in $OS_ID $OS_LIKE; do
    case "$word" in
        debian|ubuntu) FORMAT=deb ;;
        rhel|fedora|centos|rocky|almalinux|suse|opensuse|opensuse-*|sles) FORMAT=rpm ;;
        alpine) FORMAT=apk ;;
        arch) FORMAT=arch ;;
        *) continue ;;
    esac
    break
done
[ -n "$FORMAT" ] || die "unsupported distribution ${OS_ID:-unknown}; supported: $SUPPORTED"

MACHINE=$(uname -m)
case "$MACHINE" in
    x86_64|amd64) ARCH=x86_64; DEB_ARCH=amd64 ;;
    aarch64|arm64) ARCH=aarch64; DEB_ARCH=arm64 ;;
    *) die "unsupported architecture $MACHINE; supported: x86_64, aarch64" ;;
esac
[ "$FORMAT" = deb ] && ARCH=$DEB_ARCH

# --- talking to the server ----------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corral-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
chmod 700 "$WORK"
# The activation goes in a header file, not on curl's command line (other users see that).
( umask 077; printf 'X-Corral-Activation: %s:%s\n' "$ACT_ID" "$ACT_CODE" >"$WORK/auth" )

# The CA, fetched once without verification and then pinned by its hash (as registration
# does): everything after this is verified against it.
curl -sS --proto '=https' --insecure --max-time 30 -o "$WORK/ca.pem" "$SERVER/v1/agent/ca" \
    || die "cannot reach $SERVER"
GOT_HASH=$(openssl x509 -in "$WORK/ca.pem" -outform DER 2>/dev/null | sha256sum | cut -d ' ' -f 1)
[ "$GOT_HASH" = "$HASH_HEX" ] \
    || die "the server's CA certificate does not match --ca-hash (sha256:$GOT_HASH): refusing"

# get PATH OUT [HEADERS]: GET $SERVER$PATH into OUT (its headers into HEADERS); on an HTTP
# error, the server's one-line reason in REFUSED.
REFUSED=""
get() {
    code=$(curl -sS --proto '=https' --cacert "$WORK/ca.pem" --max-time 600 -H "@$WORK/auth" \
        -D "${3:-/dev/null}" -o "$2" -w '%{http_code}' "$SERVER$1") \
        || die "cannot download $SERVER$1"
    [ "$code" = 200 ] && return 0
    REFUSED=$(sed -n 's/.*"message": *"\([^"]*\)".*/\1/p' "$2" | head -n 1)
    REFUSED="HTTP $code${REFUSED:+: $REFUSED}"
    return 1
}

installed_version() {
    case "$FORMAT" in
        deb) dpkg-query -W -f '${Status} ${Version}\n' corral-agent 2>/dev/null \
                | sed -n 's/^install ok installed //p' ;;
        rpm) rpm -q --qf '%{VERSION}\n' corral-agent 2>/dev/null | grep -v 'not installed' ;;
        apk) apk info -v corral-agent 2>/dev/null | sed -n 's/^corral-agent-//p' ;;
        arch) pacman -Q corral-agent 2>/dev/null | cut -d ' ' -f 2 ;;
    esac
    return 0
}

# A package's own version may carry a revision (0.1.0-1, 0.1.0-r0): compare without it.
same_version() {
    case "$1" in
        "$2"|"$2"-*) return 0 ;;
        *) return 1 ;;
    esac
}

registered() {
    [ -f "$STATE_DIR/state.json" ]
}

start_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
        systemctl enable corral-agent.service
        systemctl restart corral-agent.service
        say "corral-agent is running (systemctl status corral-agent)"
    elif [ "$FORMAT" = apk ] && command -v rc-service >/dev/null 2>&1 \
        && [ -x /etc/init.d/corral-agent ]; then
        rc-update add corral-agent default >/dev/null
        rc-service corral-agent restart
        say "corral-agent is running (rc-service corral-agent status)"
    else
        say "no service manager found running: start the agent with 'corral-agent run'"
    fi
}

INSTALLED=$(installed_version) || INSTALLED=""
if ! get /v1/packages/manifest "$WORK/manifest.json" "$WORK/manifest.headers"; then
    if [ -n "$INSTALLED" ] && registered; then
        # Run again after the activation was used up: nothing left to do but the service.
        say "the server refused the activation ($REFUSED);" \
            "corral-agent $INSTALLED is installed and registered already"
        start_service
        exit 0
    fi
    die "the server refused the package manifest: $REFUSED"
fi
# The signature of exactly these bytes comes with them (X-Corral-Signature); manifest.sig is
# the same, for a server or proxy that drops the header.
grep -i '^x-corral-signature:' "$WORK/manifest.headers" | sed 's/^[^:]*: *//' | tr -d '\r' \
    >"$WORK/manifest.sig" || true
if ! [ -s "$WORK/manifest.sig" ]; then
    get /v1/packages/manifest.sig "$WORK/manifest.sig" \
        || die "the server refused the manifest signature: $REFUSED"
fi
get /v1/packages/signing-key "$WORK/signing.pem" \
    || die "the server refused the signing key: $REFUSED"

# A key pinned by an earlier install must not change.
if [ -f "$KEY_FILE" ] && ! cmp -s "$KEY_FILE" "$WORK/signing.pem"; then
    die "the server's package signing key differs from the one pinned in $KEY_FILE: refusing"
fi

openssl base64 -d -A -in "$WORK/manifest.sig" -out "$WORK/manifest.bin" 2>/dev/null \
    || die "the manifest signature is not base64: refusing"
openssl pkeyutl -verify -pubin -inkey "$WORK/signing.pem" -rawin -in "$WORK/manifest.json" \
    -sigfile "$WORK/manifest.bin" >/dev/null 2>&1 \
    || die "the package manifest's signature does not verify: nothing installed"

# --- choosing the package ----------------------------------------------------------------

# The manifest is canonical JSON (sorted keys, no spaces) of fixed fields, sorted by name,
# then version (oldest first), format and arch: one package object per line once split.
field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"*\([^\",]*\).*/\1/p"
}

tr '}' '\n' <"$WORK/manifest.json" >"$WORK/entries"
FILE=""
SUM=""
VERSION=""
VERSIONS=""
while IFS= read -r entry; do
    case "$entry" in
        *'"name":"corral-agent"'*) ;;
        *) continue ;;
    esac
    [ "$(field "$entry" format)" = "$FORMAT" ] || continue
    [ "$(field "$entry" arch)" = "$ARCH" ] || continue
    v=$(field "$entry" version)
    VERSIONS="${VERSIONS:+$VERSIONS, }$v"
    if [ -z "$WANT_VERSION" ] || [ "$v" = "$WANT_VERSION" ]; then
        VERSION=$v
        FILE=$(field "$entry" file)
        SUM=$(field "$entry" sha256)
    fi
done <"$WORK/entries"

if [ -z "$FILE" ]; then
    [ -n "$VERSIONS" ] || die "the server has no corral-agent package for $FORMAT/$ARCH"
    die "the server has no corral-agent $WANT_VERSION for $FORMAT/$ARCH; it has: $VERSIONS"
fi
case "$FILE" in
    *[!A-Za-z0-9._+~-]*|.*) die "the manifest names a strange file ($FILE): refusing" ;;
esac

# --- installing --------------------------------------------------------------------------

if [ -n "$INSTALLED" ] && same_version "$INSTALLED" "$VERSION"; then
    say "corral-agent $INSTALLED is installed already"
else
    say "downloading $FILE"
    get "/v1/packages/files/$FILE" "$WORK/$FILE" || die "the server refused $FILE: $REFUSED"
    GOT_SUM=$(sha256sum "$WORK/$FILE" | cut -d ' ' -f 1)
    [ "$GOT_SUM" = "$SUM" ] \
        || die "$FILE does not match the signed manifest's sha256: nothing installed"
    say "installing corral-agent $VERSION ($FORMAT)"
    case "$FORMAT" in
        deb) dpkg -i "$WORK/$FILE" >"$WORK/install.log" 2>&1 ;;
        rpm) rpm -U --replacepkgs "$WORK/$FILE" >"$WORK/install.log" 2>&1 ;;
        apk) apk add --allow-untrusted "$WORK/$FILE" >"$WORK/install.log" 2>&1 ;;
        arch) pacman -U --noconfirm "$WORK/$FILE" >"$WORK/install.log" 2>&1 ;;
    esac || { cat "$WORK/install.log" >&2; die "installing $FILE failed"; }
fi

mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
if ! [ -f "$KEY_FILE" ]; then
    cp "$WORK/signing.pem" "$KEY_FILE.tmp"
    chmod 644 "$KEY_FILE.tmp"
    mv "$KEY_FILE.tmp" "$KEY_FILE"
fi

if registered; then
    say "this node is registered already; not registering again"
else
    say "registering with $SERVER"
    if [ -n "$NODE_NAME" ]; then
        corral-agent register --url "$SERVER" --id "$ACT_ID" --code "$ACT_CODE" \
            --ca-hash "$CA_HASH" --name "$NODE_NAME"
    else
        corral-agent register --url "$SERVER" --id "$ACT_ID" --code "$ACT_CODE" \
            --ca-hash "$CA_HASH"
    fi || die "registration failed (see above); the package stays installed"
fi

start_service
