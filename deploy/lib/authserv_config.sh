# authserv_config.sh: the argon2id cost of a new authserv.toml, measured on this host (sourced by
# deploy/up when it first writes the file; tests/deploy/authserv_config_test.sh runs it alone).
# shellcheck shell=bash

# postern_authserv_calibrate CONF DIRECTORY_BIN: puts the [password] argon2_ops, argon2_memory
# and hash_threads that `postern-directory calibrate` proposes here (one hash of
# POSTERN_HASH_TARGET_MS of CPU, default 50, within 64 MiB) at the top of CONF's [password]
# section, with calibrate's comments saying what it measured. A CONF that sets argon2_ops already
# is left as it is: the cost is chosen once, since a new one rehashes every password at its next
# login. Fails, leaving CONF unchanged, when calibrate does.
postern_authserv_calibrate() {
  local conf=$1 directory_bin=$2 proposed
  if awk '/^\[/ { s = $0 } s == "[password]" && /^argon2_ops[ \t]*=/ { found = 1 } END { exit !found }' "$conf"; then
    return 0
  fi
  proposed=$("$directory_bin" calibrate --target-ms "${POSTERN_HASH_TARGET_MS:-50}") || return 1
  # calibrate prints its comments, a [password] header and the keys: all but the header go under
  # the config's own header (or a new one at the end).
  ADD="# Measured by postern-directory calibrate on $(hostname) ($(date -u +%Y-%m-%d)):
$(grep -v '^\[password\]$' <<<"$proposed")" awk '
    { print }
    $0 == "[password]" && !done { print ENVIRON["ADD"]; done = 1 }
    END { if (!done) { print ""; print "[password]"; print ENVIRON["ADD"] } }' "$conf" >"$conf.tmp" || return 1
  mv "$conf.tmp" "$conf"
}
