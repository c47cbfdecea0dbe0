package machine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// testTimeout bounds every ssh command and wait in these tests.
const testTimeout = 30 * time.Second

// kind is one way to run a machine, with the user that logs in to it.
type kind struct {
	name  string
	start func(Config) (Machine, error)
	user  string
}

func kinds(t *testing.T) []kind {
	osUser, err := OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	return []kind{
		{name: "builtin", start: StartBuiltin, user: "claude"},
		{name: "openssh", start: StartOpenSSH, user: osUser},
	}
}

// forKinds runs test once per kind of machine.
func forKinds(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) { test(t, newFixture(t, k)) })
	}
}

// key is a key with its private half written for ssh -i.
type key struct {
	testkit.Key
	file string
}

func newKey(t *testing.T, dir, name string) key {
	t.Helper()
	k := testkit.NewKey(t)
	return key{Key: k, file: k.WriteFile(t, filepath.Join(dir, name))}
}

// fixture is a machine of one kind with keys, a pinned host key and the
// files the OpenSSH clients need.
type fixture struct {
	kind       kind
	cfg        Config
	host, port string
	hostKey    ssh.PublicKey
	user       key // authorized
	gateway    key // authorized
	other      key // not authorized
	knownHosts string
	m          Machine
}

func newFixture(t *testing.T, k kind) *fixture {
	t.Helper()
	f := makeFixture(t, k)
	f.start(t)
	return f
}

// makeFixture is newFixture without starting the machine, so that a test
// can change its config first.
func makeFixture(t *testing.T, k kind) *fixture {
	t.Helper()
	clientDir := t.TempDir()
	host := testkit.NewKey(t)
	f := &fixture{
		kind:    k,
		user:    newKey(t, clientDir, "user"),
		gateway: newKey(t, clientDir, "gateway"),
		other:   newKey(t, clientDir, "other"),
		hostKey: host.Public(),
	}
	f.host, f.port = freeAddr(t)
	port, _ := strconv.Atoi(f.port)
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	doc, err := bootstrap.New("lc-test-1", "lc-test-1", k.user, expires, port,
		[]ssh.PublicKey{f.user.Public(), f.gateway.Public()}, host.PEM)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = Config{
		Addr:   net.JoinHostPort(f.host, f.port),
		Doc:    doc,
		Dir:    t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	f.knownHosts = filepath.Join(clientDir, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", f.host, f.port, ssh.MarshalAuthorizedKey(f.hostKey))
	if err := os.WriteFile(f.knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// start starts the fixture's machine and closes it when the test ends.
func (f *fixture) start(t *testing.T) {
	t.Helper()
	m, err := f.kind.start(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
}

func (f *fixture) home() string { return filepath.Join(f.cfg.Dir, HomeDir) }

// freeAddr picks a random 127.x.y.z address and a port free on it.
func freeAddr(t *testing.T) (string, string) {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(250*250))
	if err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("127.%d.%d.%d", 10+n.Int64()/250%200, n.Int64()%250, 2+n.Int64()%250)
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return host, port
}

// result is what a real OpenSSH client run produced.
type result struct {
	stdout, stderr string
	code           int
}

// sshArgs are the OpenSSH client options that pin the machine's host key
// and use exactly one identity, ignoring the user's configuration.
func (f *fixture) sshArgs(k key) []string {
	return f.agentArgs(k, "none")
}

// agentArgs are sshArgs with the client's agent socket.
func (f *fixture) agentArgs(k key, agent string) []string {
	return []string{"-F", "/dev/null", "-i", k.file,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=" + agent, "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + f.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"}
}

// ssh runs the real ssh client against the machine. The last of extra is
// the command, "" for a shell; the others are options.
func (f *fixture) ssh(t *testing.T, k key, user string, stdin io.Reader, extra ...string) result {
	t.Helper()
	args := append(f.sshArgs(k), "-p", f.port)
	args = append(args, extra[:len(extra)-1]...)
	args = append(args, user+"@"+f.host)
	if command := extra[len(extra)-1]; command != "" {
		args = append(args, command)
	}
	return run(t, stdin, "ssh", args...)
}

func run(t *testing.T, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%s: %v", name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s; stderr: %s", name, testTimeout, stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// dial connects an x/crypto client that accepts only the pinned host key.
func (f *fixture) dial(user string, k key) (*ssh.Client, error) {
	return ssh.Dial("tcp", f.cfg.Addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(k.Signer)},
		HostKeyCallback: ssh.FixedHostKey(f.hostKey),
		Timeout:         testTimeout,
	})
}

func (f *fixture) client(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := f.dial(f.kind.user, f.user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) session(t *testing.T, c *ssh.Client) *ssh.Session {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lines reads r line by line into a channel, so a test can wait for a line
// with a deadline.
func lines(r io.Reader) <-chan string {
	out := make(chan string, 100)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			out <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return out
}

// next returns the next line, failing the test if none comes in time.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("output ended early")
		}
		return l
	case <-time.After(testTimeout):
		t.Fatalf("no output within %s", testTimeout)
	}
	return ""
}

// processGone reports whether pid has ended: it no longer exists, or it is a
// zombie waiting for a reaper that is not ours.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, testTimeout)
		}
		<-tick.C
	}
}
