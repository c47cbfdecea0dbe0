// Package nix holds the NixOS side of cc-gateway: the flake with the machine
// image and the gateway's NixOS module (see docs/nixos.md). As Go, it carries
// only the files of that side that the gateway itself ships in its binary.
package nix

import _ "embed"

// InfectScript is the body of the infect path's user_data: a POSIX shell
// script that installs NixOS over a stock Hetzner image. It expects the
// variables CC_GATEWAY_FLAKE, CC_GATEWAY_CONFIGURATION and
// CC_GATEWAY_NIX_INSTALLER to be set in front of it; see
// bootstrap.Document.RenderInfect.
//
//go:embed infect/user-data.sh
var InfectScript string

// RevokeKeyScript is cc-instance-revoke-key, the POSIX shell script that
// makes a machine's sshd refuse one key (bootstrap.RevokeKeyCommand runs
// it). The NixOS image runs it as root through sudo; the local cloud's
// machines write it into their folder and run it as their user.
//
//go:embed modules/cloud-instance/revoke-key.sh
var RevokeKeyScript string

// AgentStateScript is cc-agent-state, the POSIX shell script that records
// what the machine's coding agent is doing (working, waiting or idle) for
// the gateway's reaper (bootstrap.AgentStateCommand reads what it writes).
// The NixOS image installs it on PATH and runs it from Claude Code's hooks;
// the local cloud's machines write it into their folder's bin.
//
//go:embed modules/cloud-instance/agent-state.sh
var AgentStateScript string

// SecretsEnvScript is the POSIX shell snippet every login shell on a
// machine sources: it exports the person's current secrets from
// bootstrap.SecretsFile and unsets removed ones, so new windows of a
// persistent tmux session see changes made after its server started. The
// NixOS image sources it from /etc/profile; the local cloud's machines
// write it into their folder and source it from the user's ~/.profile.
//
//go:embed modules/cloud-instance/secrets-env.sh
var SecretsEnvScript string

// BootstrapScript is the NixOS image's bootstrap script
// (modules/cloud-instance/bootstrap.sh). The image runs it at boot and, in
// its personalise mode, as cc-instance-personalise
// (bootstrap.PersonaliseCommand); the local cloud's machines write it into
// their folder and run it in that mode as their user, on a tree laid out as
// the image's (see package machine).
//
//go:embed modules/cloud-instance/bootstrap.sh
var BootstrapScript string
