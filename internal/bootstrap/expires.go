package bootstrap

import (
	"strings"
	"time"
)

// ExpiresScript is what the gateway runs on a machine, as the instance user,
// to tell programs there a new expiry after an extend. It replaces the
// expires file atomically: a new file beside it, then a rename, which the
// instance user may do because the NixOS bootstrap unit hands it the folder.
// The local cloud's machines name their own folder in CLOUD_INSTANCE_DIR.
// Its one argument is the expiry as the document writes it: RFC 3339 in UTC,
// or "never".
const ExpiresScript = `d="${CLOUD_INSTANCE_DIR:-/etc/cloud-instance}"; printf '%s\n' "$1" > "$d/expires.new" && mv -f "$d/expires.new" "$d/expires"`

// ExpiresCommand returns the command line of an SSH exec request that runs
// ExpiresScript for expires; the zero time means "never".
func ExpiresCommand(expires time.Time) string {
	value := "never"
	if !expires.IsZero() {
		value = expires.UTC().Format(time.RFC3339)
	}
	return "sh -c " + ShellQuote(ExpiresScript) + " sh " + ShellQuote(value)
}

// ShellQuote makes s one word for a POSIX shell, whatever it holds.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RevokeKeyProgram is the program on every machine that makes its sshd
// refuse a key (nix/modules/cloud-instance/revoke-key.sh): on NixOS it adds
// the key to the root-owned /etc/ssh/revoked_keys through sudo; the local
// cloud's machines put it on their sessions' PATH, with their own file.
const RevokeKeyProgram = "cc-instance-revoke-key"

// RevokeKeyCommand returns the command line of an SSH exec request that
// revokes key (authorized_keys form) on the machine.
func RevokeKeyCommand(key string) string {
	return RevokeKeyProgram + " " + ShellQuote(key)
}

// PersonaliseProgram is the program on every machine that gives a warm
// pool machine its person (nix/modules/cloud-instance/bootstrap.sh, in its
// personalise mode): it reads a bootstrap document on standard input, for
// the same instance and host key as the pool document the machine booted
// with, and applies its authorized keys and expiry; the machine keeps them
// across reboots. Once personalised, the same document again is no error,
// any other is refused.
const PersonaliseProgram = "cc-instance-personalise"

// PersonaliseCommand is the command line of an SSH exec request that runs
// PersonaliseProgram; the document goes on its standard input (it holds
// the machine's private host key, which no command line may show).
const PersonaliseCommand = PersonaliseProgram
