package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

// run runs cmd through the gateway and returns its output and Wait error.
func run(t *testing.T, c *gossh.Client, cmd string, stdin []byte) (stdout, stderr []byte, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if stdin != nil {
		s.Stdin = bytes.NewReader(stdin)
	}
	err = s.Run(cmd)
	return out.Bytes(), errOut.Bytes(), err
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *gossh.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want exit error, got %v", err)
	}
	return ee.ExitStatus()
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExecExitStatus(t *testing.T) {
	_, fd := setup(t.Context(), t)
	c := fd.dial(t)
	for _, tc := range []struct {
		cmd  string
		want int
	}{{"true", 0}, {"exit 3", 3}, {"exit 255", 255}} {
		_, stderr, err := run(t, c, tc.cmd, nil)
		if got := exitStatus(t, err); got != tc.want {
			t.Errorf("%q: exit status %d, want %d (stderr %q)", tc.cmd, got, tc.want, stderr)
		}
		if err := fd.result(t); err != nil {
			t.Errorf("%q: bridge: %v", tc.cmd, err)
		}
	}
}

func TestStdoutStderrSeparated(t *testing.T) {
	_, fd := setup(t.Context(), t)
	stdout, stderr, err := run(t, fd.dial(t), "echo out; echo err >&2; echo out2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(stdout) != "out\nout2\n" {
		t.Errorf("stdout %q", stdout)
	}
	if string(stderr) != "err\n" {
		t.Errorf("stderr %q", stderr)
	}
}

func TestStdinStreamedWithEOF(t *testing.T) {
	_, fd := setup(t.Context(), t)
	data := randomBytes(t, 4<<20)
	sum := sha256.Sum256(data)
	// sha256sum only prints after it has read EOF.
	stdout, stderr, err := run(t, fd.dial(t), "sha256sum", data)
	if err != nil {
		t.Fatalf("%v (stderr %q)", err, stderr)
	}
	if got, want := strings.Fields(string(stdout)), hex.EncodeToString(sum[:]); len(got) == 0 || got[0] != want {
		t.Errorf("remote hash %q, want %s", stdout, want)
	}
	if fd.activity.Load() == 0 {
		t.Error("no activity recorded for a data session")
	}
}

func TestBinaryExact(t *testing.T) {
	_, fd := setup(t.Context(), t)
	c := fd.dial(t)

	data := randomBytes(t, 2<<20)
	stdout, _, err := run(t, c, "cat", data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout, data) {
		t.Errorf("cat returned %d bytes that differ from the %d sent", len(stdout), len(data))
	}

	// No terminal: newlines must not become \r\n, NUL and 0xff survive.
	stdout, _, err = run(t, c, `printf 'a\nb\r\n\000\377'`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\nb\r\n\x00\xff"; string(stdout) != want {
		t.Errorf("got %q, want %q", stdout, want)
	}
}

func TestOutputDrainedBeforeExit(t *testing.T) {
	_, fd := setup(t.Context(), t)
	c := fd.dial(t)
	for range 3 {
		stdout, stderr, err := run(t, c, "head -c 3000000 /dev/zero; head -c 100000 /dev/zero >&2; exit 5", nil)
		if got := exitStatus(t, err); got != 5 {
			t.Errorf("exit status %d, want 5", got)
		}
		if len(stdout) != 3000000 || len(stderr) != 100000 {
			t.Errorf("got %d bytes of stdout and %d of stderr, want 3000000 and 100000", len(stdout), len(stderr))
		}
	}
}

// newSession opens a session on c, closed when the test ends.
func newSession(t *testing.T, c *gossh.Client) *gossh.Session {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ptySession opens a session with an 80x24 terminal through a new front door.
func ptySession(t *testing.T) *gossh.Session {
	t.Helper()
	_, fd := setup(t.Context(), t)
	s := newSession(t, fd.dial(t))
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEarlyEnvReplayed(t *testing.T) {
	_, fd := setup(t.Context(), t)
	s := newSession(t, fd.dial(t))
	if err := s.Setenv("CCGW_TEST", "hello"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(`printf %s "$CCGW_TEST"`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello" {
		t.Errorf("machine saw CCGW_TEST=%q", out)
	}
}

// TestBridgeLogsToItsCaller: a bridge's lines go to the logger its caller
// gave, which says which connection they are about.
func TestBridgeLogsToItsCaller(t *testing.T) {
	_, fd := setup(t.Context(), t)
	s := newSession(t, fd.dial(t))
	// sshd accepts only CCGW_* variables: the machine refuses this one.
	if err := s.Setenv("NOT_ACCEPTED", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Run("true"); err != nil {
		t.Fatal(err)
	}
	if err := fd.result(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fd.logs.String(), `msg="machine refused early request" conn=fd000001 type=env`) {
		t.Errorf("the bridge's log:\n%s", fd.logs.String())
	}
}

func TestPTYEarlyWindowChange(t *testing.T) {
	s := ptySession(t)
	// Resized before the program starts: the front door holds this back.
	if err := s.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("stty size")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "50 132" {
		t.Errorf("stty size = %q, want 50 132", out)
	}
}

func TestExitSignal(t *testing.T) {
	_, fd := setup(t.Context(), t)
	_, _, err := run(t, fd.dial(t), "kill -TERM $$", nil)
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("want exit signal TERM, got %v", err)
	}
}

// TestWindowChangeAfterStart resizes a running terminal session. The resize
// asks for a reply, so the machine has applied it before the next keystroke.
func TestWindowChangeAfterStart(t *testing.T) {
	s := ptySession(t)
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("stty size; read line; stty size"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "24 80" {
		t.Fatalf("first size %q, %v", line, err)
	}
	size := struct{ Cols, Rows, Width, Height uint32 }{100, 60, 0, 0}
	if ok, err := s.SendRequest("window-change", true, gossh.Marshal(&size)); err != nil || !ok {
		t.Fatalf("window-change: ok=%v err=%v", ok, err)
	}
	if _, err := io.WriteString(stdin, "\n"); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n') // the terminal echoes the newline first
		if err != nil {
			t.Fatalf("no second size: %v", err)
		}
		if l := strings.TrimSpace(line); l != "" {
			if l != "60 100" {
				t.Errorf("size after resize %q, want 60 100", l)
			}
			break
		}
	}
}

// TestRequestRepliesForwarded checks that want-reply is honoured both ways,
// using raw channels so every reply is visible.
func TestRequestRepliesForwarded(t *testing.T) {
	_, fd := setup(t.Context(), t, "ClientAliveInterval 1")
	c := fd.dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	ok, err := ch.SendRequest("exec", true, gossh.Marshal(&struct{ Command string }{"exec cat"}))
	if err != nil || !ok {
		t.Fatalf("exec: ok=%v err=%v", ok, err)
	}

	// Downstream to upstream: sshd refuses what it does not know.
	if ok, err := ch.SendRequest("no-such-request@example.com", true, nil); err != nil || ok {
		t.Errorf("unknown request: ok=%v err=%v, want refused", ok, err)
	}

	// Upstream to downstream: with ClientAliveInterval sshd asks the
	// client, on the open channel, whether it is still there.
	select {
	case req, ok := <-reqs:
		if !ok {
			t.Fatal("channel closed before the keepalive arrived")
		}
		if req.Type != "keepalive@openssh.com" || !req.WantReply {
			t.Fatalf("got request %q (want reply %v), want keepalive@openssh.com wanting a reply", req.Type, req.WantReply)
		}
		req.Reply(false, nil)
	case <-time.After(15 * time.Second):
		t.Fatal("no keepalive from sshd")
	}
	if n := fd.activity.Load(); n != 0 {
		t.Errorf("activity recorded %d times without any data", n)
	}

	// sshd accepts a resize on any running session. (It would refuse a
	// signal for a root login, which has no privilege separation.)
	size := struct{ Cols, Rows, Width, Height uint32 }{100, 60, 0, 0}
	if ok, err := ch.SendRequest("window-change", true, gossh.Marshal(&size)); err != nil || !ok {
		t.Errorf("window-change: ok=%v err=%v, want accepted", ok, err)
	}
	// EOF ends cat, and the machine's exit report goes to the person before
	// its EOF: an OpenSSH ControlMaster closes the session once it has seen
	// EOF both ways, which would leave no room for the report.
	if err := ch.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	refuseUntilClosed(t, reqs)
	if err := fd.result(t); err != nil {
		t.Errorf("bridge: %v", err)
	}
	sent := fd.sent.list()
	if exit, eof := slices.Index(sent, "exit-status"), slices.Index(sent, "EOF"); exit < 0 || eof < exit {
		t.Errorf("sent downstream %v, want an exit-status and then EOF", sent)
	}
}

// refuseUntilClosed refuses every request on reqs until the channel closes,
// which it must within 15 seconds.
func refuseUntilClosed(t *testing.T, reqs <-chan *gossh.Request) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				return
			}
			req.Reply(false, nil)
		case <-deadline:
			t.Fatal("channel still open after 15s")
		}
	}
}

func TestRefusedSubsystem(t *testing.T) {
	_, fd := setup(t.Context(), t)
	ch, reqs, err := fd.dial(t).OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	ok, err := ch.SendRequest("subsystem", true, gossh.Marshal(&struct{ Name string }{"no-such-subsystem"}))
	if err != nil || ok {
		t.Fatalf("subsystem: ok=%v err=%v, want refused", ok, err)
	}
	// The gateway closes the channel after refusing.
	refuseUntilClosed(t, reqs)
	if err := fd.result(t); err == nil || !strings.Contains(err.Error(), "refused subsystem") {
		t.Errorf("bridge returned %v, want a refusal", err)
	}
}

// startReady starts cmd, which must print "ready" first, and waits for that line.
func startReady(t *testing.T, c *gossh.Client, cmd string) (s *gossh.Session, stderr *bytes.Buffer, rest chan []byte) {
	t.Helper()
	s = newSession(t, c)
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	stdout, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &bytes.Buffer{}
	s.Stderr = stderr
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	rest = make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		rest <- b
	}()
	return s, stderr, rest
}

// waitExit waits, bounded, for the session to end and returns its status.
func waitExit(t *testing.T, s *gossh.Session, rest chan []byte) int {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		<-rest // stdout is drained before Wait, as Wait requires
		errc <- s.Wait()
	}()
	select {
	case err := <-errc:
		return exitStatus(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("session hangs")
		return 0
	}
}

func TestUpstreamKilledMidSession(t *testing.T) {
	m, fd := setup(t.Context(), t)
	s, stderr, rest := startReady(t, fd.dial(t), "echo ready; exec cat")
	m.killAll(t)
	if got := waitExit(t, s, rest); got != 255 {
		t.Errorf("exit status %d, want 255", got)
	}
	if !strings.Contains(stderr.String(), LostMessage) {
		t.Errorf("stderr %q, want %q", stderr, LostMessage)
	}
	if err := fd.result(t); !errors.Is(err, ErrUpstreamLost) {
		t.Errorf("bridge returned %v, want ErrUpstreamLost", err)
	}
}

// TestPersonHangsUp closes the session from the person's side while the
// program still runs: the bridge must hang up on the machine and return.
func TestPersonHangsUp(t *testing.T) {
	_, fd := setup(t.Context(), t)
	s, _, _ := startReady(t, fd.dial(t), "echo ready; exec cat")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fd.result(t); err != nil {
		t.Errorf("bridge returned %v after the person hung up", err)
	}
}

func TestContextEndsSession(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	_, fd := setup(ctx, t)
	s, stderr, rest := startReady(t, fd.dial(t), "echo ready; exec cat")
	cancel(errors.New("the gateway is shutting down"))
	if got := waitExit(t, s, rest); got != 255 {
		t.Errorf("exit status %d, want 255", got)
	}
	if want := "cc-gateway: the gateway is shutting down\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if err := fd.result(t); err == nil {
		t.Error("bridge returned nil for a cancelled session")
	}
}

func TestNoGoroutinesLeftBehind(t *testing.T) {
	_, fd := setup(t.Context(), t)
	c := fd.dial(t)
	// A first session makes sure both connections are fully up.
	if _, _, err := run(t, c, "true", nil); err != nil {
		t.Fatal(err)
	}
	fd.result(t)
	base := runtime.NumGoroutine()

	for range 3 {
		run(t, c, "echo out; echo err >&2; exit 2", []byte("input"))
		fd.result(t)

		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		s.RequestPty("xterm", 24, 80, gossh.TerminalModes{})
		s.Output("stty size")
		s.Close()
		fd.result(t)

		s, err = c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		s.RequestSubsystem("no-such-subsystem")
		s.Close()
		fd.result(t)
	}

	testkit.Eventually(t, 10*time.Second, func() error { return testkit.GoroutinesAtMost(base) })
}
