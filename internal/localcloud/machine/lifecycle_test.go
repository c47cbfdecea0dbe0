package machine

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHomeSurvivesRestart(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		if r := f.ssh(t, f.user, f.kind.user, nil, `echo kept > "$HOME/note"`); r.code != 0 {
			t.Fatalf("write note: exit %d, stderr %q", r.code, r.stderr)
		}
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}

		fi, err := os.Stat(f.home())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("home mode %v, want 0700", fi.Mode().Perm())
		}
		for name, want := range map[string]string{InstanceIDFile: "lc-test-1\n", ExpiresFile: "2030-01-02T03:04:05Z\n"} {
			if got, err := os.ReadFile(filepath.Join(f.cfg.Dir, name)); err != nil || string(got) != want {
				t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
			}
		}

		f.start(t)
		r := f.ssh(t, f.user, f.kind.user, nil, `cat "$HOME/note"`)
		if r.stdout != "kept\n" {
			t.Errorf("after restart: got %q (stderr %q), want kept", r.stdout, r.stderr)
		}
	})
}

func TestCloseEndsSessions(t *testing.T) {
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) { testCloseEndsSessions(t, k) })
	}
}

func testCloseEndsSessions(t *testing.T, k kind) {
	baseline := runtime.NumGoroutine()
	f := newFixture(t, k)
	c := f.client(t)
	type running struct {
		pid  int
		done chan error
	}
	var sessions []running
	for _, withPTY := range []bool{false, true} {
		s := f.session(t, c)
		if withPTY {
			if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
				t.Fatal(err)
			}
		}
		stdout, err := s.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := lines(stdout)
		if err := s.Start("echo $$; exec sleep 60"); err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(next(t, out))
		if err != nil {
			t.Fatal(err)
		}
		r := running{pid: pid, done: make(chan error, 1)}
		go func() { r.done <- s.Wait() }()
		sessions = append(sessions, r)
	}

	if err := f.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.m.(*builtin); ok {
		// The builtin machine reaps its own processes before Close
		// returns; sshd's session processes are reaped by init.
		for _, s := range sessions {
			if !processGone(s.pid) {
				t.Errorf("process %d outlived Close", s.pid)
			}
		}
	}
	for _, s := range sessions {
		select {
		case <-s.done: // the connection is gone, so the session ends
		case <-time.After(testTimeout):
			t.Fatal("session still open after Close")
		}
		eventually(t, "session process "+strconv.Itoa(s.pid)+" ends", func() bool { return processGone(s.pid) })
	}
	if c, err := net.Dial("tcp", f.cfg.Addr); err == nil {
		c.Close()
		t.Error("machine still accepts connections after Close")
	}

	c.Close()
	eventually(t, "goroutines end", func() bool { return runtime.NumGoroutine() <= baseline })

	if m, ok := f.m.(*openSSH); ok {
		select {
		case <-m.done:
		default:
			t.Error("sshd has not been reaped after Close")
		}
		if !processGone(m.cmd.Process.Pid) {
			t.Errorf("sshd (pid %d) outlived Close", m.cmd.Process.Pid)
		}
	}
}

func TestStartErrors(t *testing.T) {
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, k)

			// The address is taken by the running machine.
			other := f.cfg
			other.Dir = t.TempDir()
			if m, err := k.start(other); err == nil {
				m.Close()
				t.Error("second machine started on a taken address")
			}

			bad := f.cfg
			bad.Dir = t.TempDir()
			bad.Addr = "127.0.0.1:0"
			bad.Doc.AuthorizedKeys = nil
			if m, err := k.start(bad); err == nil || !strings.Contains(err.Error(), "no authorized keys") {
				if m != nil {
					m.Close()
				}
				t.Errorf("document without keys: got %v", err)
			}
		})
	}

	t.Run("openssh-wrong-user", func(t *testing.T) {
		f := newFixture(t, kinds(t)[0]) // a builtin machine's document names "claude"
		cfg := f.cfg
		cfg.Dir = t.TempDir()
		cfg.Addr = "127.0.0.1:0"
		_, err := StartOpenSSH(cfg)
		if err == nil || !strings.Contains(err.Error(), "set --instance-user") {
			t.Errorf("got %v, want advice to set the instance user", err)
		}
	})
}

// An sshd that cannot start is reported with its own words, at once.
func TestOpenSSHReportsSSHDErrors(t *testing.T) {
	sshd, err := findSSHD()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	host, port := freeAddr(t)
	addr := net.JoinHostPort(host, port)
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte("ListenAddress "+addr+"\nNoSuchOption yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := runSSHD(sshd, conf, dir, addr, nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err == nil {
		m.Close()
		t.Fatal("sshd with a broken configuration reported ready")
	}
	if !strings.Contains(err.Error(), "NoSuchOption") {
		t.Errorf("error does not quote sshd: %v", err)
	}
}
