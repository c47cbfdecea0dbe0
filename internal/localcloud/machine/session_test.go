package machine

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestExecWithOpenSSHClient(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		if r := f.ssh(t, f.user, f.kind.user, nil, "exit 3"); r.code != 3 {
			t.Errorf("exit 3: got exit code %d, stderr %q", r.code, r.stderr)
		}

		r := f.ssh(t, f.user, f.kind.user, nil, "echo out; echo err >&2")
		if r.code != 0 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("stdout and stderr: got %+v, want out\\n on stdout and err\\n on stderr", r)
		}

		// The gateway's key is authorized as well as the person's.
		if r := f.ssh(t, f.gateway, f.kind.user, nil, "true"); r.code != 0 {
			t.Errorf("gateway key: exit code %d, stderr %q", r.code, r.stderr)
		}

		data := make([]byte, 1<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		r = f.ssh(t, f.user, f.kind.user, bytes.NewReader(data), "sha256sum")
		if want := hex.EncodeToString(sum[:]) + "  -\n"; r.stdout != want {
			t.Errorf("sha256sum of 1 MiB of stdin: got %q (stderr %q), want %q", r.stdout, r.stderr, want)
		}

		r = f.ssh(t, f.user, f.kind.user, nil, `printf '%s\n' "$HOME" "$USER" "$(pwd)"`)
		got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(got) != 3 || got[0] != f.home() || got[1] != f.kind.user {
			t.Fatalf("environment: got %q, want HOME %s and USER %s", got, f.home(), f.kind.user)
		}
		// sshd starts sessions in the home the user database names: the
		// machine's own with nss_wrapper (TestRelativePaths); the builtin
		// machine always in HOME.
		if f.kind.name == "builtin" && got[2] != f.home() {
			t.Errorf("working directory: got %s, want %s", got[2], f.home())
		}
	})
}

func TestPTYWithOpenSSHClient(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		r := f.ssh(t, f.user, f.kind.user, nil, "-tt", `printf 'a\tb\r\342\202\254\n'; echo err >&2; exit 5`)
		// The terminal turns \n into \r\n (onlcr) and merges stderr into
		// the one stream; every other byte passes unchanged.
		if want := "a\tb\r€\r\nerr\r\n"; r.stdout != want || r.stderr != "" || r.code != 5 {
			t.Errorf("got stdout %q, stderr %q, exit %d; want stdout %q, no stderr, exit 5", r.stdout, r.stderr, r.code, want)
		}
	})
}

func TestPTYSizeAndModes(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		c := f.client(t)

		// A window-change before the command starts still counts.
		s := f.session(t, c)
		if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.WindowChange(30, 90); err != nil {
			t.Fatal(err)
		}
		out, err := s.Output(`stty size; echo "$TERM"`)
		if err != nil || string(out) != "30 90\r\nxterm\r\n" {
			t.Errorf("size before start: got %q, %v; want \"30 90\\r\\nxterm\\r\\n\"", out, err)
		}

		for _, echo := range []uint32{0, 1} {
			s := f.session(t, c)
			if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: echo}); err != nil {
				t.Fatal(err)
			}
			out, err := s.Output("stty -a")
			if err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`(^|\s)-echo(\s|$)`)
			if echo == 1 {
				want = regexp.MustCompile(`(^|\s)echo(\s|$)`)
			}
			if !want.Match(out) {
				t.Errorf("mode ECHO=%d not applied; stty -a says %q", echo, out)
			}
		}

		// A resize of a running command reaches it.
		s = f.session(t, c)
		if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
		stdin, err := s.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := s.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		out2 := lines(stdout)
		if err := s.Start(`stty size; while read line; do stty size; done`); err != nil {
			t.Fatal(err)
		}
		if l := next(t, out2); l != "24 80" {
			t.Fatalf("initial size: got %q, want 24 80", l)
		}
		if err := s.WindowChange(50, 132); err != nil {
			t.Fatal(err)
		}
		// The resize and the newline travel separately on the server side,
		// so ask again until the new size shows, a bounded number of times.
		seen := false
		for range 50 {
			if _, err := stdin.Write([]byte("\n")); err != nil {
				t.Fatal(err)
			}
			l := next(t, out2)
			for l == "" { // the terminal's echo of the newline
				l = next(t, out2)
			}
			if l == "50 132" {
				seen = true
				break
			}
		}
		if !seen {
			t.Error("stty size never showed 50 132 after window-change")
		}
	})
}

func TestSignals(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		c := f.client(t)

		err := f.session(t, c).Run("kill -TERM $$")
		var exit *ssh.ExitError
		if !errors.As(err, &exit) || exit.Signal() != "TERM" {
			t.Errorf("command killed by SIGTERM: got %v, want exit-signal TERM", err)
		}

		if f.kind.name == "openssh" && f.kind.user == "root" {
			// sshd serves signal requests only from its unprivileged
			// post-auth process, which root logins do without.
			t.Log("sshd refuses signal requests for root logins; signal request checked on the builtin machine")
			return
		}
		s := f.session(t, c)
		if err := s.Start("exec sleep 60"); err != nil {
			t.Fatal(err)
		}
		if err := s.Signal(ssh.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		select {
		case err := <-done:
			if !errors.As(err, &exit) || exit.Signal() != "USR1" {
				t.Errorf("signal request: got %v, want exit-signal USR1", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("signal request did not end the command")
		}
	})
}

func TestEnv(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		s := f.session(t, f.client(t))
		if err := s.Setenv("LANG", "C.UTF-8"); err != nil {
			t.Fatal(err)
		}
		if err := s.Setenv("LC_TEST_X", "x y"); err != nil {
			t.Fatal(err)
		}
		// Refused by the builtin machine, silently ignored by sshd.
		refused := s.Setenv("LD_PRELOAD", "/nonexistent.so")
		if f.kind.name == "builtin" && refused == nil {
			t.Error("LD_PRELOAD was accepted")
		}
		// The machine may preload nss_wrapper itself, never the client's.
		out, err := s.Output(`printf '%s|%s|%s' "$LANG" "$LC_TEST_X" "${LD_PRELOAD-unset}"`)
		if err != nil || !strings.HasPrefix(string(out), "C.UTF-8|x y|") || strings.Contains(string(out), "nonexistent") {
			t.Errorf("got %q, %v; want C.UTF-8|x y| and not the client's LD_PRELOAD", out, err)
		}
	})
}

func TestAuthentication(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		r := f.ssh(t, f.other, f.kind.user, nil, "true")
		if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("unauthorized key with ssh: got exit %d, stderr %q; want 255 and Permission denied", r.code, r.stderr)
		}
		if c, err := f.dial(f.kind.user, f.other); err == nil {
			c.Close()
			t.Error("unauthorized key accepted")
		}
		if c, err := f.dial("nobody", f.user); err == nil {
			c.Close()
			t.Error("authorized key accepted for another user")
		}
		r = f.ssh(t, f.user, "nobody", nil, "true")
		if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("other user with ssh: got exit %d, stderr %q; want 255 and Permission denied", r.code, r.stderr)
		}
	})
}

func TestForwardingAndGlobalRequests(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			io.Copy(conn, conn)
		}()

		c := f.client(t)
		conn, err := c.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(testTimeout))
		if _, err := conn.Write([]byte("ping over the machine")); err != nil {
			t.Fatal(err)
		}
		// Half-close: the echo server sees EOF and closes, so ReadAll ends.
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		if err != nil || string(got) != "ping over the machine" {
			t.Errorf("forwarded echo: got %q, %v", got, err)
		}

		ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		if err != nil || ok {
			t.Errorf("keepalive: got %v, %v; want a refusal", ok, err)
		}
	})
}

func TestSFTP(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		local := t.TempDir()
		data := make([]byte, 100_000)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(local, "up"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := filepath.Join(f.home(), "via-sftp")
		batch := filepath.Join(local, "batch")
		script := "put " + filepath.Join(local, "up") + " " + remote + "\nget " + remote + " " + filepath.Join(local, "down") + "\n"
		if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append(f.sshArgs(f.user), "-P", f.port, "-b", batch, f.kind.user+"@"+f.host)
		if r := run(t, nil, "sftp", args...); r.code != 0 {
			t.Fatalf("sftp: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, p := range []string{remote, filepath.Join(local, "down")} {
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: does not hold the uploaded bytes (%v)", p, err)
			}
		}
	})
}

// A background job that keeps stdout open does not hold the session open on
// the builtin machine, and nothing the command wrote is lost. (sshd waits
// for the job, so this is builtin only.)
func TestBackgroundJobDoesNotHoldSession(t *testing.T) {
	f := newFixture(t, kinds(t)[0])
	s := f.session(t, f.client(t))
	var stdout bytes.Buffer
	s.Stdout = &stdout
	err := s.Run(`sleep 60 & echo $!; head -c 300000 /dev/zero | tr '\0' x; exit 4`)
	first, rest, _ := strings.Cut(stdout.String(), "\n")
	if pid, perr := strconv.Atoi(first); perr == nil {
		defer syscall.Kill(pid, syscall.SIGKILL)
	}
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 4 {
		t.Errorf("got %v, want exit status 4", err)
	}
	if rest != strings.Repeat("x", 300000) {
		t.Errorf("got %d bytes of output after the pid, want 300000 x", len(rest))
	}
}

func TestShell(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		script := "echo $((6*7))\nexit 7\n"
		r := f.ssh(t, f.user, f.kind.user, strings.NewReader(script), "-T", "")
		if r.stdout != "42\n" || r.code != 7 {
			t.Errorf("shell without a terminal: got %+v, want 42 and exit 7", r)
		}
		r = f.ssh(t, f.user, f.kind.user, strings.NewReader(script), "-tt", "")
		if !strings.Contains(r.stdout, "42\r\n") || r.code != 7 {
			t.Errorf("shell on a terminal: got %+v, want 42 and exit 7", r)
		}
	})
}
