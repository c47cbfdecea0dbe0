#!/bin/sh
# cc-instance-revoke-key KEY: makes this machine's sshd refuse KEY, a public
# key in authorized_keys form ("TYPE BASE64": no options, no comment), for
# every user, by adding it to sshd's RevokedKeys file. A key already there
# changes nothing. It only ever adds: taking a key back out is for root.
#
# The gateway runs it as the instance user when a key leaves its allow list
# (bootstrap.RevokeKeyCommand). On NixOS it runs as root through sudo on
# /etc/ssh/revoked_keys (see ../cloud-instance.nix); the local cloud's
# machines run it as their user on the file in their folder, which they
# name in CLOUD_INSTANCE_DIR.
set -eu

file="${CLOUD_INSTANCE_DIR:-/etc/ssh}/revoked_keys"

fail() {
	printf 'cc-instance-revoke-key: %s\n' "$1" >&2
	exit 2
}

[ "$#" -eq 1 ] || fail "give one public key: cc-instance-revoke-key 'TYPE BASE64'"
key=$1
# One line of the form sshd reads and nothing else: the file is sshd's, and
# what is not a key must never reach it.
nl='
'
case $key in
*"$nl"*) fail "the key must be one line" ;;
esac
printf '%s\n' "$key" | grep -Eqx '[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}' ||
	fail "not a public key in authorized_keys form (TYPE BASE64, without options or comment)"
printf '%s\n' "$key" | ssh-keygen -l -f - >/dev/null 2>&1 ||
	fail "not a public key ssh-keygen can read"

if [ -f "$file" ] && grep -qxF -e "$key" "$file"; then
	exit 0
fi
printf '%s\n' "$key" >>"$file"
