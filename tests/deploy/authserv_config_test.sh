#!/usr/bin/env bash
# authserv_config_test.sh: the argon2id cost deploy/up writes into a new authserv.toml
# (deploy/lib/authserv_config.sh with the real postern-directory calibrate): the keys land once
# under [password], the config passes postern-authserv --check-config with them, a second run and
# an operator's own cost leave the file alone, and a failing calibrate changes nothing.
# usage: tests/deploy/authserv_config_test.sh SOURCE_DIR POSTERN_DIRECTORY POSTERN_AUTHSERV
set -uo pipefail

src=$1
directory_bin=$2
authserv_bin=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/authserv-config-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
show() { local -a l; mapfile -t -n 40 l <<<"$1"; printf '       | %s\n' "${l[@]}"; }
has() { if grep -q -E -- "$3" <<<"$2"; then ok "$1"; else bad "$1"; echo "       wanted /$3/ in:"; show "$2"; fi; }
count() { grep -c -E -- "$2" <<<"$1"; }
# check NAME CMD...: CMD's status decides; returns it.
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; return 1; fi; }
# The lines of one section of a TOML text.
section() { awk -v want="[$2]" '/^\[/ { s = $0; next } s == want' <<<"$1"; }

# shellcheck source=deploy/lib/authserv_config.sh
source "$src/deploy/lib/authserv_config.sh"

echo "# deploy/lib/authserv_config.sh in $tmp"
if command -v shellcheck >/dev/null; then
  if shellcheck "$src/deploy/lib/authserv_config.sh"; then ok "shellcheck"; else bad "shellcheck"; fi
fi

# The template filled in as deploy/up fills it, with the certificates its [tls] section names.
state="$tmp/state"
if ! "$src/deploy/certs" ca --dir "$state/ca" >/dev/null 2>&1 ||
   ! "$src/deploy/certs" host --ca "$state/ca" --dir "$state/nss" --host localhost --ip 127.0.0.1 >/dev/null 2>&1; then
  bad "deploy/certs made no host database"
  exit 1
fi
conf="$tmp/authserv.toml"
sed -e "s|@STATE_DIR@|$state|g" -e "s|@DOMAIN@|example.com|g" -e "s|@HOST_CN@|localhost|g" \
  "$src/deploy/config/authserv.toml" >"$conf"
template=$(cat "$conf")

# A low target keeps the test quick; deploy/up uses the default (50 ms).
export POSTERN_HASH_TARGET_MS=20
if postern_authserv_calibrate "$conf" "$directory_bin"; then ok "calibrate ran"; else bad "calibrate failed"; fi
text=$(cat "$conf")
password=$(section "$text" password)
has "argon2_ops under [password]" "$password" '^argon2_ops = [0-9]+$'
has "argon2_memory under [password]" "$password" '^argon2_memory = "[0-9]+K"$'
has "hash_threads under [password]" "$password" '^hash_threads = [0-9]+$'
has "hash_memory under [password]" "$password" '^hash_memory = "(kept|per_hash)"$'
has "both ways of hashing measured, as a comment" "$password" '^# per check: [0-9.]+ ms with the memory mapped per hash \(libsodium\), [0-9.]+ ms kept'
has "what calibrate measured, as a comment" "$password" '^# argon2id t=[0-9]+ m=[0-9]+ KiB: [0-9.]+ ms of CPU per hash on this host \(target 20 ms\)'
has "the template's own keys stay" "$password" '^rehash = true$'
check "one argon2_ops in the file" [ "$(count "$text" '^argon2_ops')" = 1 ]
check "one [password] header" [ "$(count "$text" '^\[password\]$')" = 1 ]
# Nothing but the inserted lines changed.
added=$(diff <(echo "$template") <(echo "$text") | grep -c '^>')
removed=$(diff <(echo "$template") <(echo "$text") | grep -c '^<')
check "only calibrate's lines added ($added added, $removed removed)" \
  test "$removed" = 0 -a "$added" -ge 7 -a "$added" -le 9

# The daemon reads them: --check-config prints the effective values.
ops=$(sed -n 's/^argon2_ops = //p' <<<"$password")
kib=$(sed -n 's/^argon2_memory = "\([0-9]*\)K"$/\1/p' <<<"$password")
checked=$("$authserv_bin" --config "$conf" --check-config 2>&1)
rc=$?
check "postern-authserv --check-config accepts it (exit $rc)" [ "$rc" = 0 ] || show "$checked"
effective=$(section "$checked" password)
# (A value equal to the default is followed by "# default".)
has "the effective argon2_ops is calibrate's" "$effective" "^argon2_ops = $ops( |\$)"
mem_pattern="^argon2_memory = \"?($kib""k|$((kib / 1024))M)\"?( |\$)"
has "the effective argon2_memory is calibrate's" "$effective" "$mem_pattern"
memory=$(sed -n 's/^hash_memory = //p' <<<"$password")
has "the effective hash_memory is calibrate's" "$effective" "^hash_memory = $memory( |\$)"

# Later runs: a config that has a cost keeps it (deploy/up calls this only for a new file, too).
before=$(md5sum <"$conf")
postern_authserv_calibrate "$conf" "$directory_bin"
check "a second run changes nothing" [ "$(md5sum <"$conf")" = "$before" ]
own="$tmp/own.toml"
printf '[daemon]\nuser = "postern"\n\n[password]\nargon2_ops = 4\nrehash = true\n' >"$own"
before=$(md5sum <"$own")
postern_authserv_calibrate "$own" "$directory_bin"
check "an operator's own argon2_ops is kept" [ "$(md5sum <"$own")" = "$before" ]

# A config without [password] gets the section at its end.
bare="$tmp/bare.toml"
printf '[daemon]\nuser = "postern"\n' >"$bare"
postern_authserv_calibrate "$bare" "$directory_bin"
has "no [password]: one is added" "$(section "$(cat "$bare")" password)" '^argon2_ops = [0-9]+$'

# calibrate failing (here: a target it refuses) leaves the file as it was and says so.
fresh="$tmp/fresh.toml"
echo "$template" >"$fresh"
before=$(md5sum <"$fresh")
if POSTERN_HASH_TARGET_MS=0 postern_authserv_calibrate "$fresh" "$directory_bin" 2>/dev/null; then
  bad "a failing calibrate was not reported"
else
  ok "a failing calibrate is reported"
fi
check "and leaves the file unchanged" test "$(md5sum <"$fresh")" = "$before" -a ! -e "$fresh.tmp"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
