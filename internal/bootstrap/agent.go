package bootstrap

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// AgentStateProgram is the command on every machine that records what its
// coding agent is doing (nix/modules/cloud-instance/agent-state.sh).
const AgentStateProgram = "cc-agent-state"

// AgentStateFile is where AgentStateProgram records the state, relative to
// the instance user's HOME.
const AgentStateFile = ".local/state/cc-gateway/agent"

// AgentStates are the states AgentStateProgram records.
var AgentStates = []string{"working", "waiting", "idle"}

// AgentStateCommand is the command line of an SSH exec request that prints
// the agent's state file: nothing, and success, when there is none yet.
const AgentStateCommand = `sh -c 'f="$HOME/` + AgentStateFile + `"; [ -e "$f" ] || exit 0; exec cat "$f"'`

// ParseAgentState reads what AgentStateCommand printed: the state and the
// time the machine recorded it, or "" and the zero time for no state.
func ParseAgentState(out []byte) (string, time.Time, error) {
	if len(bytes.TrimSpace(out)) == 0 {
		return "", time.Time{}, nil
	}
	line, rest, _ := bytes.Cut(out, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) != 2 || len(rest) != 0 {
		return "", time.Time{}, fmt.Errorf("agent state %q: want one line, STATE TIME", truncate(out, 80))
	}
	known := false
	for _, s := range AgentStates {
		known = known || s == fields[0]
	}
	if !known {
		return "", time.Time{}, fmt.Errorf("agent state %q: want one of %s", truncate([]byte(fields[0]), 40), strings.Join(AgentStates, ", "))
	}
	since, err := time.Parse(time.RFC3339, fields[1])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("agent state time: %w", err)
	}
	return fields[0], since, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
