package nix_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/nix"
)

// TestAgentStateScript runs cc-agent-state with dash and bash as a hook
// would: each state replaces the file with one line the gateway parses,
// and a bad argument is one clear error, exit status 1 (never 2, which
// Claude Code takes for "block the tool"), with the file untouched.
func TestAgentStateScript(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			sh := tool(t, shell, shell)
			home := t.TempDir()
			script := filepath.Join(t.TempDir(), bootstrap.AgentStateProgram)
			if err := os.WriteFile(script, []byte(nix.AgentStateScript), 0o755); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) error {
				_, err := runTool(t, "env", append([]string{"HOME=" + home, sh, script}, args...)...)
				return err
			}
			file := filepath.Join(home, bootstrap.AgentStateFile)
			line := regexp.MustCompile(`^(working|waiting|idle) [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\n$`)
			for _, state := range bootstrap.AgentStates {
				if err := run(state); err != nil {
					t.Fatalf("cc-agent-state %s: %v", state, err)
				}
				got, err := os.ReadFile(file)
				if err != nil || !line.Match(got) {
					t.Fatalf("after %s the file holds %q (%v)", state, got, err)
				}
				if parsed, _, err := bootstrap.ParseAgentState(got); err != nil || parsed != state {
					t.Errorf("the gateway reads %q as %q, %v", got, parsed, err)
				}
			}
			kept, _ := os.ReadFile(file)
			for _, bad := range [][]string{{"asleep"}, {}, {"working", "idle"}, {"Working"}} {
				err := run(bad...)
				if err == nil || !strings.Contains(err.Error(), "cc-agent-state: ") || !strings.Contains(err.Error(), "exit status 1") {
					t.Errorf("cc-agent-state %q: %v, want the script's one error, exit status 1", bad, err)
				}
				if now, _ := os.ReadFile(file); string(now) != string(kept) {
					t.Errorf("after %q the file holds %q, want it unchanged", bad, now)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(file))
			if len(entries) != 1 {
				t.Errorf("the state folder holds %d entries, want only the state file", len(entries))
			}
		})
	}
}

// TestClaudeHooks evaluates the image's Claude Code managed settings: the
// hooks, in the shape of Claude Code's settings, run cc-agent-state with
// the state of each event.
func TestClaudeHooks(t *testing.T) {
	nixInstantiate := tool(t, "nix-instantiate", "nix-bin")
	hooks, err := filepath.Abs("modules/cloud-instance/claude-hooks.nix")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, nixInstantiate, "--eval", "--strict", "--json", "--expr",
		"import "+hooks+` { agentState = "/bin/cc-agent-state"; }`)
	if err != nil {
		t.Fatal(err)
	}
	type command struct{ Type, Command string }
	type matcher struct {
		Matcher *string
		Hooks   []command
	}
	var settings struct{ Hooks map[string][]matcher }
	if err := json.Unmarshal([]byte(out), &settings); err != nil {
		t.Fatalf("settings %s: %v", out, err)
	}
	every := "*"
	on := func(m *string, state string) []matcher {
		return []matcher{{Matcher: m, Hooks: []command{{"command", "/bin/cc-agent-state " + state}}}}
	}
	want := map[string][]matcher{
		"UserPromptSubmit": on(nil, "working"),
		"PreToolUse":       on(&every, "working"),
		"PostToolUse":      on(&every, "working"),
		"Notification":     on(nil, "waiting"),
		"Stop":             on(nil, "idle"),
	}
	if !reflect.DeepEqual(settings.Hooks, want) {
		t.Errorf("hooks %s, want %+v", out, want)
	}

	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	module := string(b)
	for _, want := range []string{
		`pkgs.writeScriptBin "` + bootstrap.AgentStateProgram + `"`,
		`exec ${pkgs.dash}/bin/dash ${./cloud-instance/agent-state.sh} "$@"`,
		`agentStateFile = "${config.users.users.${cfg.user}.home}/` + bootstrap.AgentStateFile + `";`,
		`"r ${agentStateFile} - - - - -"`,
		`environment.etc."claude-code/managed-settings.json".text = builtins.toJSON managedSettings;`,
		`[ agentState ]`,
	} {
		if !strings.Contains(module, want) {
			t.Errorf("modules/cloud-instance.nix lacks %q", want)
		}
	}
}
