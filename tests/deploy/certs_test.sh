#!/usr/bin/env bash
# certs_test.sh: deploy/certs end to end with the real tools (certutil, crlutil, pk12util, openssl):
# CA, host databases (EC and RSA), idempotence, re-issue, client PKCS#12/PEM, revocation and CRL.
# usage: tests/deploy/certs_test.sh [SOURCE_DIR]; prints "N passed, N failed", exits non-zero on a failure.
set -uo pipefail

src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
certs="$src/deploy/certs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/certs-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp/tmp"
mkdir -p "$TMPDIR"
cd "$tmp" || exit 1

for tool in certutil crlutil pk12util openssl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (libnss3-tools, openssl)"; exit 1; }
done

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
# check NAME CMD...: CMD's status decides.
check() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi; }
# has NAME TEXT PATTERN: the text matches the extended regular expression.
show() { local -a l; mapfile -t -n 20 l <<<"$1"; printf '       | %s\n' "${l[@]}"; }
has() { if grep -q -E -- "$3" <<<"$2"; then ok "$1"; else bad "$1"; echo "       wanted /$3/ in:"; show "$2"; fi; }
hasnt() { if grep -q -E -- "$3" <<<"$2"; then bad "$1"; show "$2"; else ok "$1"; fi; }

# All of the script's output is kept, to check later that no password was ever printed.
log="$tmp/all-output.log"
certs() { "$certs" "$@" 2>&1 | tee -a "$log"; return "${PIPESTATUS[0]}"; }

mode() { stat -c %a "$1"; }
pw_of() { sed 's/^Internal (Software) Token://' "$1"; }
host_pem() { certutil -L -d "sql:$1" -n "$2" -a 2>/dev/null | openssl x509; }
sums() { (cd "$1" && md5sum -- *); }

echo "# deploy/certs in $tmp"
check "shellcheck deploy/certs" bash -c "! command -v shellcheck || shellcheck '$certs'"
out=$("$certs" --help)
has "--help documents every command" "$out" 'ca --dir.*'
for c in host client revoke crl import-crl add-ca list; do
  has "--help documents $c" "$out" "^  $c "
done

# --- CA -------------------------------------------------------------------------------------
out=$(certs ca --dir ca)
check "ca exits 0" test -f ca/ca.pem
has "ca reports creation" "$out" 'CA created'
check "CA files: cert9.db key4.db pkcs11.txt ca.pem ca.der crl.der" \
  test -f ca/cert9.db -a -f ca/key4.db -a -f ca/pkcs11.txt -a -f ca/ca.der -a -f ca/crl.der
check "CA directory is 0700" test "$(mode ca)" = 700
check "CA password file is 0600" test "$(mode ca/password)" = 600
text=$(openssl x509 -in ca/ca.pem -noout -text)
has "CA is CA:TRUE (critical basic constraints)" "$text" 'CA:TRUE'
has "CA key is ECDSA P-256" "$text" 'NIST CURVE: P-256'
has "CA signs with SHA-256" "$text" 'ecdsa-with-SHA256'
has "CA key usage is certificate and CRL signing" "$text" 'Certificate Sign, CRL Sign'
has "CA has a subject key identifier" "$text" 'Subject Key Identifier'
has "CA valid for 10 years" "$(openssl x509 -in ca/ca.pem -noout -enddate)" "20[0-9][0-9] GMT"
check "CA is self-signed and verifies" openssl verify -CAfile ca/ca.pem ca/ca.pem
has "CA database trusts Postern-CA CT,C,C" "$(certutil -L -d sql:ca)" 'Postern-CA +CTu,Cu,Cu'
ca_sum=$(md5sum ca/ca.der ca/cert9.db ca/key4.db ca/password)
out=$(certs ca --dir ca)
has "second ca run keeps the CA" "$out" 'CA kept'
check "second ca run changes nothing" test "$ca_sum" = "$(md5sum ca/ca.der ca/cert9.db ca/key4.db ca/password)"

# --- host database --------------------------------------------------------------------------
hostargs=(--ca ca --dir h1 --host mail.example.com --host localhost --ip 127.0.0.1 --ip ::1)
out=$(certs host "${hostargs[@]}")
check "host exits 0 and creates the database" test -f h1/cert9.db -a -f h1/key4.db -a -f h1/pkcs11.txt
has "host reports the new certificate" "$out" 'Server-Cert issued: serial [0-9]+'
for f in cert9.db key4.db pkcs11.txt password; do
  check "h1/$f is 0600" test "$(mode "h1/$f")" = 600
done
check "password file has exactly one line" test "$(wc -l <h1/password)" = 1
check "password line is 'Internal (Software) Token:<random>'" \
  grep -q -x -E 'Internal \(Software\) Token:[A-Za-z0-9_-]{40,}' h1/password
check "host and CA passwords differ (random, no default)" test "$(pw_of h1/password)" != "$(pw_of ca/password)"
hasnt "no default password netscape!" "$(cat h1/password)" 'netscape!'
pw_of h1/password >h1.pw
has "the password file opens the database" "$(certutil -K -d sql:h1 -f h1.pw 2>&1)" 'NSS Certificate DB:Server-Cert'
list=$(certutil -L -d sql:h1)
has "Server-Cert has trust u,u,u" "$list" '^Server-Cert +u,u,u$'
has "Postern-CA has trust CT,C,C" "$list" '^Postern-CA +CT,C,C$'
has "Server-Cert validates as SSL server (-u V)" "$(certutil -V -d sql:h1 -n Server-Cert -u V 2>&1)" 'certificate is valid'
has "Server-Cert validates as SSL client (-u C)" "$(certutil -V -d sql:h1 -n Server-Cert -u C 2>&1)" 'certificate is valid'
host_pem h1 Server-Cert >h1-server.pem
sans=$(openssl x509 -in h1-server.pem -noout -ext subjectAltName)
has "SAN DNS:mail.example.com" "$sans" 'DNS:mail.example.com'
has "SAN DNS:localhost" "$sans" 'DNS:localhost'
has "SAN IP 127.0.0.1" "$sans" 'IP Address:127.0.0.1'
has "SAN IP ::1" "$sans" 'IP Address:0:0:0:0:0:0:0:1'
text=$(openssl x509 -in h1-server.pem -noout -text)
has "host EKU serverAuth and clientAuth" "$text" 'TLS Web Server Authentication, TLS Web Client Authentication'
has "host key usage digitalSignature" "$text" 'Digital Signature'
has "host key is ECDSA P-256" "$text" 'NIST CURVE: P-256'
has "host has an authority key identifier" "$text" 'Authority Key Identifier'
has "host subject CN=mail.example.com,O=Postern" "$(openssl x509 -in h1-server.pem -noout -subject -nameopt RFC2253)" 'CN=mail.example.com,O=Postern'
check "openssl verifies the host certificate against ca.pem" openssl verify -CAfile ca/ca.pem h1-server.pem
days=$(( ($(date -d "$(openssl x509 -in h1-server.pem -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
check "host validity is at most 825 days ($days)" test "$days" -le 825 -a "$days" -ge 800
check "h1/ca.pem and h1/crl.der installed" cmp -s h1/crl.der ca/crl.der
serial1=$(openssl x509 -in h1-server.pem -noout -serial)
before=$(sums h1)
out=$(certs host "${hostargs[@]}")
has "second host run keeps Server-Cert" "$out" 'Server-Cert kept'
check "second host run changes no file" test "$before" = "$(sums h1)"
check "second host run keeps the serial" test "$serial1" = "$(host_pem h1 Server-Cert | openssl x509 -noout -serial)"

out=$(certs host --ca ca --dir h2 --host imap.example.com)
check "a second host gets another password" test "$(pw_of h2/password)" != "$(pw_of h1/password)"
check "serial numbers are unique" test "$serial1" != "$(host_pem h2 Server-Cert | openssl x509 -noout -serial)"

# Different names re-issue: new serial and key, the old certificate and key are gone.
out=$(certs host --ca ca --dir h1 --host mail.example.com --host smtp.example.com --ip 127.0.0.1)
has "changed SANs re-issue and say so" "$out" 'Server-Cert re-issued: .*names'
host_pem h1 Server-Cert >h1-new.pem
check "re-issued certificate has a new serial" test "$serial1" != "$(openssl x509 -in h1-new.pem -noout -serial)"
has "re-issued certificate has the new SAN" "$(openssl x509 -in h1-new.pem -noout -ext subjectAltName)" 'DNS:smtp.example.com'
keys=$(certutil -K -d sql:h1 -f h1.pw 2>&1)
check "one key left, no orphan" test "$(grep -c '^<' <<<"$keys")" = 1
hasnt "no orphan key" "$keys" 'orphan'

# RSA next to ECDSA.
out=$(certs host --ca ca --dir h1 --host mail.example.com --host smtp.example.com --ip 127.0.0.1 --rsa)
has "--rsa issues Server-Cert-RSA" "$out" 'Server-Cert-RSA issued'
has "--rsa keeps the ECDSA certificate" "$out" 'Server-Cert kept'
has "Server-Cert-RSA has trust u,u,u" "$(certutil -L -d sql:h1)" '^Server-Cert-RSA +u,u,u$'
host_pem h1 Server-Cert-RSA >h1-rsa.pem
text=$(openssl x509 -in h1-rsa.pem -noout -text)
has "RSA key is 2048 bits" "$text" 'Public-Key: \(2048 bit\)'
has "RSA certificate key usage adds keyEncipherment" "$text" 'Digital Signature, Key Encipherment'
has "RSA certificate EKU serverAuth and clientAuth" "$text" 'TLS Web Server Authentication, TLS Web Client Authentication'
has "Server-Cert-RSA validates (-u V)" "$(certutil -V -d sql:h1 -n Server-Cert-RSA -u V 2>&1)" 'certificate is valid'
has "Server-Cert is still the ECDSA one" "$(host_pem h1 Server-Cert | openssl x509 -noout -text)" 'id-ecPublicKey'

# Ownership for the daemon account (TLS-25).
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  certs host --ca ca --dir h3 --host store.example.com --user nobody >/dev/null
  for f in cert9.db key4.db pkcs11.txt password; do
    check "--user nobody: h3/$f owned by nobody, 0600" test "$(stat -c '%U %a' "h3/$f")" = "nobody 600"
  done
  check "--user: directory owned by nobody" test "$(stat -c %U h3)" = nobody
else
  echo "skip - --user (needs root and the nobody account)"
fi

# --- client certificate ---------------------------------------------------------------------
out=$(certs client --ca ca --name alice --email alice@example.com --out clients)
has "client issues alice" "$out" 'client alice issued: serial'
for f in alice.p12 alice.p12.password alice.pem alice.key; do
  check "clients/$f is 0600" test "$(mode "clients/$f")" = 600
done
check "openssl verify -CAfile ca.pem alice.pem" openssl verify -CAfile ca/ca.pem clients/alice.pem
check "alice.key matches alice.pem" cmp -s <(openssl x509 -in clients/alice.pem -noout -pubkey) \
  <(openssl pkey -in clients/alice.key -pubout)
check "alice.pem holds one certificate (not the CA first)" test "$(grep -c 'BEGIN CERTIFICATE' clients/alice.pem)" = 1
check "alice.key is an unencrypted PKCS#8 key" grep -q 'BEGIN PRIVATE KEY' clients/alice.key
text=$(openssl x509 -in clients/alice.pem -noout -text)
has "client EKU is clientAuth only" "$text" 'X509v3 Extended Key Usage: *$'
has "client EKU names TLS Web Client Authentication" "$text" '^ +TLS Web Client Authentication$'
has "client subject E=,CN=alice,O=Postern" "$(openssl x509 -in clients/alice.pem -noout -subject -nameopt RFC2253)" 'emailAddress=alice@example.com,CN=alice,O=Postern'
has "client SAN email" "$text" 'email:alice@example.com'
check "alice.p12 opens with its password file" openssl pkcs12 -in clients/alice.p12 -noout -passin file:clients/alice.p12.password
alice_serial=$(openssl x509 -in clients/alice.pem -noout -serial | cut -d= -f2)
out=$(certs client --ca ca --name alice --email alice@example.com --out clients)
has "second client run keeps alice" "$out" 'client alice kept'
check "second client run keeps the serial" test "$alice_serial" = "$(openssl x509 -in clients/alice.pem -noout -serial | cut -d= -f2)"

# --- revocation and CRL ---------------------------------------------------------------------
cp clients/alice.pem alice-old.pem
out=$(certs revoke --ca ca --name alice)
has "revoke names the serial" "$out" "revoked serial $((16#$alice_serial))"
out=$(certs crl --ca ca --out crl-copy.der)
has "crl prints the CRL path" "$out" 'CRL written: .*/ca/crl.der'
crl=$(openssl crl -inform DER -in ca/crl.der -noout -text)
has "CRL lists alice's serial" "$crl" "Serial Number: 0*$alice_serial"
has "CRL has a next update" "$crl" 'Next Update'
check "crl --out copies the CRL" cmp -s crl-copy.der ca/crl.der
check "openssl refuses alice with the CRL" bash -c "! openssl verify -crl_check -CAfile ca/ca.pem -CRLfile ca/crl.pem alice-old.pem"
check "openssl accepts the host with the CRL" openssl verify -crl_check -CAfile ca/ca.pem -CRLfile ca/crl.pem h1-new.pem
out=$(certs revoke --ca ca --name alice)
has "revoking again is a no-op" "$out" 'already revoked'
out=$(certs import-crl --dir h1 --crl ca/crl.pem)
check "import-crl installs HOSTDIR/crl.der" cmp -s h1/crl.der ca/crl.der
has "import-crl puts the CRL in the database" "$(crlutil -L -d sql:h1)" 'Postern-CA +CRL'
certutil -A -d sql:h1 -f h1.pw -n alice-old -t ,, -a -i alice-old.pem
has "NSS (certutil -V) sees alice as revoked" "$(certutil -V -d sql:h1 -n alice-old -u C 2>&1)" 'revoked'
out=$(certs client --ca ca --name alice --email alice@example.com --out clients)
has "client after revocation re-issues" "$out" 'client alice re-issued: .*revoked'

# --- errors, list, secrecy ------------------------------------------------------------------
cp -r h2 hbad
echo 'Internal (Software) Token:wrong' >hbad/password
out=$("$certs" host --ca ca --dir hbad --host imap.example.com 2>&1); rc=$?
check "a wrong password fails" test "$rc" != 0
has "the error names the password file" "$out" 'password in .*hbad/password does not open'
out=$("$certs" host --ca ca --dir h9 --host 'bad name' 2>&1); rc=$?
check "a bad host name fails" test "$rc" != 0
has "the error names the host" "$out" "'bad name' is not a valid DNS name"
"$certs" frobnicate >/dev/null 2>&1; rc=$?
check "an unknown command exits 2" test "$rc" = 2
out=$(certs list --dir h1)
has "list shows Server-Cert with days left" "$out" 'Server-Cert +u,u,u +ec-256 +[0-9]+ +[0-9-]+ +8[0-9][0-9] '
has "list shows Postern-CA" "$out" 'Postern-CA +CT,C,C'
out=$(certs list --dir ca)
has "list of the CA shows the revoked client" "$out" "revoked +$((16#$alice_serial)) +client"
leaked=""
for f in ca/password h1/password h2/password clients/alice.p12.password; do
  p=$(pw_of "$f")
  if grep -q -F -- "$p" "$log"; then leaked+=" $f"; fi
done
check "no password appears in any output${leaked:+ (leaked:$leaked)}" test -z "$leaked"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
