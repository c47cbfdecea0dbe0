package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestLimitsWithOpenSSH: what a person sees from the real ssh when they go
// over a limit on what one person may hold (docs/security.md), with the
// limits set low. Normal use under the default limits is the rest of the
// suite: TestFidelity runs ssh, scp, sftp, rsync, git, forwards both ways,
// a ControlMaster with its forwards and its most sessions, and keepalives
// every second.
func TestLimitsWithOpenSSH(t *testing.T) {
	r := newRigOf(t, "builtin", "claude", "--max-connections", "2", "--max-early-requests", "8", "--max-early-bytes", "2048")

	t.Run("early requests", func(t *testing.T) {
		var vars []string
		for i := range 9 {
			vars = append(vars, fmt.Sprintf("V%d=%d", i, i))
		}
		res := r.ssh(nil, "-o", "SetEnv="+strings.Join(vars, " "), "gw", "echo ran")
		if res.code != 255 || res.stdout != "" || !strings.Contains(res.stderr, "cc-gateway: this session sent more than 8 requests") {
			t.Errorf("nine environment variables, at most eight requests: %+v", res)
		}
		t.Logf("the person sees:\n%s", res.stderr)
		res = r.ssh(nil, "-o", "SetEnv=BIG="+strings.Repeat("x", 3000), "gw", "echo ran")
		if res.code != 255 || res.stdout != "" || !strings.Contains(res.stderr, "more than 2048 bytes") {
			t.Errorf("a 3000-byte variable, at most 2048 bytes: %+v", res)
		}
		// Within the limits, the variables reach the machine.
		res = r.ssh(nil, "-o", "SetEnv=A=1 B=2", "gw", "echo ran")
		if res.code != 0 || res.stdout != "ran\n" {
			t.Errorf("two variables: %+v", res)
		}
	})

	t.Run("connections per person", func(t *testing.T) {
		ctl := filepath.Join(shortTempDir(t), "cm")
		r.start(nil, "ssh", "-F", r.config, "-M", "-S", ctl, "-N", "gw")
		r.start(nil, "ssh", "-F", r.config, "-S", "none", "-N", "gw")
		// Both are in once the master answers and a third is refused: poll.
		var res result
		testkit.Eventually(t, 30*time.Second, func() error {
			if c := r.ssh(nil, "-S", ctl, "-O", "check", "gw"); c.code != 0 {
				return fmt.Errorf("master: %+v", c)
			}
			res = r.ssh(nil, "-S", "none", "-o", "LogLevel=INFO", "gw", "echo ran")
			if res.code == 0 {
				return fmt.Errorf("a third connection got in: %+v", res)
			}
			return nil
		})
		if res.code != 255 || !strings.Contains(res.stderr, "cc-gateway: this key already has 2 connections open") {
			t.Errorf("a third connection: %+v", res)
		}
		t.Logf("the person sees:\n%s", res.stderr)
		// Sessions through the master, which is one connection, still run.
		if res := r.ssh(nil, "-S", ctl, "gw", "echo ran"); res.code != 0 || res.stdout != "ran\n" {
			t.Errorf("a session through the master: %+v", res)
		}
		if res := r.ssh(nil, "-S", ctl, "-O", "exit", "gw"); res.code != 0 {
			t.Errorf("ssh -O exit: %+v", res)
		}
		// The master's place is free again.
		testkit.Eventually(t, 30*time.Second, func() error {
			if res := r.ssh(nil, "-S", "none", "gw", "echo ran"); res.code != 0 {
				return fmt.Errorf("no new connection once the master has gone: %+v", res)
			}
			return nil
		})
	})
}
