#!/bin/sh
# cc-agent-state working|waiting|idle: records what the coding agent on this
# machine is doing, and since when, so the gateway's reaper can keep the
# machine running while the agent works with nobody connected.
#
# The NixOS image runs it from Claude Code's hooks (see ../cloud-instance.nix);
# any other agent, or a person, can run it too. It writes one line, the state
# and the time in UTC ("working 2026-12-02T04:30:00Z"), to
# ~/.local/state/cc-gateway/agent, replacing the file at once so the gateway
# never reads half a line (bootstrap.AgentStateCommand reads it). A boot
# removes the file: no agent runs on a machine that just started.
#
# Errors exit 1, never 2: Claude Code takes a hook's exit status 2 as "block
# this tool call", and recording a state must never stop the agent.
set -eu

fail() {
	printf 'cc-agent-state: %s\n' "$1" >&2
	exit 1
}

[ "$#" -eq 1 ] || fail "give one state: cc-agent-state working|waiting|idle"
case $1 in
working | waiting | idle) ;;
*) fail "unknown state \"$1\"; give one of working, waiting, idle" ;;
esac
[ -n "${HOME:-}" ] || fail "HOME is not set, so there is nowhere to record the state"

dir="$HOME/.local/state/cc-gateway"
mkdir -p "$dir" || fail "cannot create $dir"
tmp="$dir/.agent.$$"
printf '%s %s\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp" || fail "cannot write $tmp"
mv -f "$tmp" "$dir/agent" || fail "cannot replace $dir/agent"
