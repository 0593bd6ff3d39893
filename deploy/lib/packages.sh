# packages.sh: the Debian 12 packages Postern needs, installed once (sourced by deploy/up and tests/run).
# Idempotent: apt-get runs only when something is missing.

POSTERN_BUILD_PACKAGES=(cmake g++ ninja-build pkg-config ccache
  libuv1-dev libc-ares-dev libtomlplusplus-dev libexpected-dev
  libnss3-dev libnss3-tools
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libsodium-dev libargon2-dev libcrypt-dev libidn-dev liblmdb-dev libldap-dev)
# The clients deploy/up prints commands for (swaks to send, curl and python to read).
POSTERN_CLIENT_PACKAGES=(swaks curl python3)
POSTERN_TEST_PACKAGES=(catch2 dnsmasq socat swaks curl python3 procps iproute2
  openssl gnutls-bin sslscan libssl-dev slapd ldap-utils gsasl libgmime-3.0-dev postfix
  dovecot-core dovecot-imapd dovecot-lmtpd isync offlineimap3)
POSTERN_BENCH_PACKAGES=(socat libwrap0-dev nginx-light libnginx-mod-stream dovecot-core dovecot-lmtpd dovecot-imapd)

postern_ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Servers we only start ourselves (dnsmasq, slapd, nginx in tests) must not start as system
  # services when installed: policy-rc.d holds them back during our install only.
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && own_policy=1
  fi
  # Postfix (a peer in tests and bench/mta, which start it with their own config) is installed
  # unconfigured: without /etc/postfix/main.cf no system Postfix takes port 25 from our mta.
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [ -n "$own_policy" ] && rm -f "$policy"
  # Dovecot (a peer in tests and bench, always started with its own config) must not come up as a
  # system service at the next boot and take the IMAP and POP3 ports from our mmp.
  if [[ " ${missing[*]} " == *" dovecot-core "* ]] && command -v systemctl >/dev/null; then
    systemctl disable dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
  return $rc
}
