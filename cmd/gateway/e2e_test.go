package main

// End-to-end tests: the real gateway binary in local mode, driven by the
// real OpenSSH client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

var gatewayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cc-gateway-e2e")
	if err != nil {
		panic(err)
	}
	gatewayBin = filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-race", "-o", gatewayBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gateway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gatewayProc is one run of the gateway binary.
type gatewayProc struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	logs *logBuffer
	exit chan error
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startGateway runs the binary with args and waits until it listens.
func startGateway(t testing.TB, env []string, args ...string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(gatewayBin, args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	logs := &logBuffer{}
	cmd.Stdout = logs
	cmd.Stderr = io.MultiWriter(logs, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{t: t, cmd: cmd, logs: logs, exit: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		pw.Close()
		g.exit <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-g.exit
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case g.addr = <-found:
	case err := <-g.exit:
		t.Fatalf("gateway exited before listening: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not listen within a minute:\n%s", logs.String())
	}
	return g
}

// runGateway runs the binary to its end, for start-up failures.
func runGateway(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gatewayProc) stop() {
	g.t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exit:
		if err != nil {
			g.t.Fatalf("gateway exited with %v after SIGTERM:\n%s", err, g.logs.String())
		}
	case <-time.After(30 * time.Second):
		g.t.Fatalf("gateway did not exit within 30s of SIGTERM")
	}
}

// person is someone with a key, an ssh config and a known_hosts file that
// pins the gateway's host key.
type person struct {
	t       testing.TB
	keyPath string
	pub     gossh.PublicKey
	dir     string
}

func newPerson(t testing.TB, dir string) *person {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return personWithKey(t, dir, "id_ed25519", priv)
}

// personWithKey is a person whose private key priv is written to dir/file.
func personWithKey(t testing.TB, dir, file string, priv crypto.Signer) *person {
	t.Helper()
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, file)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &person{t: t, keyPath: keyPath, pub: signer.PublicKey(), dir: dir}
}

func (p *person) authorizedLine() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p.pub))) + " person@test"
}

// result is one run of the ssh client.
type result struct {
	stdout, stderr string
	code           int
}

// ssh runs the OpenSSH client against the gateway, pinning hostKeyDir's key.
// Leading args that start with "-" are ssh options, the rest the command.
func (p *person) ssh(g *gatewayProc, hostKeyDir string, stdin string, args ...string) result {
	p.t.Helper()
	host, port, err := net.SplitHostPort(g.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	// One known_hosts file per run: runs happen at once, and the gateway
	// (and so its port) may change between them.
	known, err := os.CreateTemp(p.dir, "known_hosts")
	if err != nil {
		p.t.Fatal(err)
	}
	defer os.Remove(known.Name())
	fmt.Fprintf(known, "[%s]:%s %s", host, port, gatewayHostKey(p.t, hostKeyDir))
	if err := known.Close(); err != nil {
		p.t.Fatal(err)
	}
	// Leading arguments that start with a dash are options for ssh; the
	// rest is the remote command.
	opts := []string{
		"-F", "none", "-i", p.keyPath, "-p", port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + known.Name(), "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
	}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opts, args = append(opts, args[0]), args[1:]
	}
	cmd := exec.Command("ssh", append(append(opts, "person@"+host), args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		p.t.Fatalf("ssh %q did not finish within 2 minutes; stdout %q stderr %q", args, out.String(), errOut.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

func gatewayHostKey(t testing.TB, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return string(gossh.MarshalAuthorizedKey(signer.PublicKey()))
}

// machinePort picks a random port for the local cloud's machines, so test
// packages running at once do not collide on the same loopback address.
func machinePort(t testing.TB) string {
	n, err := rand.Int(rand.Reader, big.NewInt(20000))
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(30000 + int(n.Int64()))
}

// localGateway is the gateway in local mode with its folders under dir.
type localGateway struct {
	dir, hostKeys string
	args          []string
}

func newLocalGateway(t *testing.T, extra ...string) *localGateway {
	return newLocalGatewayIn(t, t.TempDir(), extra...)
}

func newLocalGatewayIn(t testing.TB, dir string, extra ...string) *localGateway {
	lg := &localGateway{dir: dir, hostKeys: filepath.Join(dir, "hostkeys")}
	lg.args = append([]string{
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"),
		"--host-key-dir", lg.hostKeys,
		"--machine-ssh-port", machinePort(t),
	}, extra...)
	return lg
}

func (lg *localGateway) start(t testing.TB) *gatewayProc {
	return startGateway(t, []string{"HCLOUD_TOKEN="}, lg.args...)
}

type statusDoc struct {
	State     string    `json:"state"`
	Name      string    `json:"name"`
	LeaseID   string    `json:"lease_id"`
	Expires   time.Time `json:"expires"`
	ExpiresIn int64     `json:"expires_in_seconds"`
	Sessions  int       `json:"sessions"`
	Cost      float64   `json:"cost"`
	Currency  string    `json:"currency"`
}

func (p *person) status(g *gatewayProc, lg *localGateway) statusDoc {
	p.t.Helper()
	r := p.ssh(g, lg.hostKeys, "", "status", "--json")
	if r.code != 0 {
		p.t.Fatalf("status --json exited %d: %s", r.code, r.stderr)
	}
	var st statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		p.t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return st
}
