package proxy

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestMachinesAgentState: on both kinds of local machine, the gateway reads
// nothing before the agent says anything, then what cc-agent-state (on the
// sessions' PATH) recorded; a damaged file is an error; a restart forgets
// the agent, as a boot does.
func TestMachinesAgentState(t *testing.T) {
	osUser, err := machine.OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []struct {
		name  string
		start func(machine.Config) (machine.Machine, error)
		user  string
	}{
		{"builtin", machine.StartBuiltin, "claude"},
		{"openssh", machine.StartOpenSSH, osUser},
	} {
		t.Run(kind.name, func(t *testing.T) {
			gateway, host := testkit.NewKey(t), testkit.NewKey(t)
			port := testkit.FreePort(t)
			doc, err := bootstrap.New("lc-agent-1", "lc-agent-1", kind.user, time.Now().Add(time.Hour), port,
				[]gossh.PublicKey{gateway.Public()}, host.PEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg := machine.Config{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Doc: doc, Dir: t.TempDir(), Logger: testkit.Quiet}
			start := func() machine.Machine {
				m, err := kind.start(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			mach := start()
			t.Cleanup(func() { mach.Close() })

			pool := newTestPool(t, gateway.Signer, PoolOptions{})
			m := NewMachines(pool, kind.user)
			hostKey := authorized(host.Public())
			read := func() (lease.AgentState, time.Time, error) {
				return m.AgentState(testCtx(t, 20*time.Second), cfg.Addr, hostKey)
			}
			if state, since, err := read(); err != nil || state != "" || !since.IsZero() {
				t.Fatalf("before any state: %q %s %v, want none", state, since, err)
			}

			before := time.Now().Add(-time.Second).Truncate(time.Second)
			if err := m.runAt(testCtx(t, 20*time.Second), cfg.Addr, hostKey, "mark", bootstrap.AgentStateProgram+" working", nil); err != nil {
				t.Fatal(err)
			}
			state, since, err := read()
			if err != nil || state != lease.AgentWorking || since.Before(before) || since.After(time.Now()) {
				t.Fatalf("after cc-agent-state working: %q %s %v, want working since about now", state, since, err)
			}

			file := filepath.Join(cfg.Dir, machine.HomeDir, bootstrap.AgentStateFile)
			if err := os.WriteFile(file, []byte("asleep 2026-12-02T04:00:00Z\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := read(); err == nil || !strings.Contains(err.Error(), `"asleep"`) {
				t.Errorf("a damaged state: %v, want an error naming it", err)
			}

			pool.Close()
			if err := mach.Close(); err != nil {
				t.Fatal(err)
			}
			mach = start()
			m = NewMachines(newTestPool(t, gateway.Signer, PoolOptions{}), kind.user)
			if state, _, err := read(); err != nil || state != "" {
				t.Errorf("after a restart: %q %v, want no state", state, err)
			}
		})
	}
}
