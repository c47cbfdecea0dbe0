package main

// What this package's end-to-end tests share: the real gateway binary, run
// with its folders under a test's temporary folder, and people who reach it
// with the real OpenSSH client.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
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
	// A gateway in hcloud mode would ask Hetzner's metadata service, at a
	// link-local address, for its own addresses: the tests' gateways stay
	// on loopback. A test may still give another --firewall-sources.
	os.Setenv("CC_GATEWAY_FIREWALL_SOURCES", "127.0.0.0/8")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gatewayProc is one run of the gateway binary.
type gatewayProc struct {
	*testkit.Process
	t       testing.TB
	addr    string
	hostKey string // authorized_keys form, for clients to pin
	logs    *testkit.Buffer
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// machinePort picks a random port for the local cloud's machines, so test
// packages running at once do not collide on the same loopback address.
func machinePort(t testing.TB) string {
	n, err := rand.Int(rand.Reader, big.NewInt(20000))
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(30000 + int(n.Int64()))
}

// localGateway is the gateway's command line with its folders under dir:
// local mode, unless start's environment sets HCLOUD_TOKEN.
type localGateway struct {
	dir, hostKeys string
	args          []string
}

func newLocalGateway(t *testing.T, extra ...string) *localGateway {
	return newLocalGatewayIn(t, t.TempDir(), extra...)
}

func newLocalGatewayIn(t testing.TB, dir string, extra ...string) *localGateway {
	lg := &localGateway{dir: dir, hostKeys: filepath.Join(dir, "hostkeys")}
	lg.args = []string{
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"),
		"--host-key-dir", lg.hostKeys,
		"--machine-ssh-port", machinePort(t),
	}
	// Tests of the machine's own files find them in the machine's folder
	// of the local cloud; a home volume would hold them instead. Tests of
	// homes ask for one (withHomes).
	if !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--home-volume") }) {
		lg.args = append(lg.args, "--home-volume", "0")
	}
	lg.args = append(lg.args, extra...)
	return lg
}

// withHomes is args with the flag that gives people home volumes of the
// default size.
func withHomes(args ...string) []string { return append([]string{"--home-volume", "10"}, args...) }

// start runs the binary with env added to this process's and waits until
// it listens; the test's end kills it if it still runs.
func (lg *localGateway) start(t testing.TB, env ...string) *gatewayProc {
	t.Helper()
	tmp := gatewayTempDir(t)
	cmd := exec.Command(gatewayBin, lg.args...)
	cmd.Env = append(append(os.Environ(), "HCLOUD_TOKEN=", "TMPDIR="+tmp), env...)
	pr, pw := io.Pipe()
	logs := &testkit.Buffer{}
	cmd.Stdout = logs
	cmd.Stderr = io.MultiWriter(logs, pw)
	proc, err := testkit.StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{Process: proc, t: t, logs: logs}
	go func() {
		<-g.Done()
		pw.Close()
	}()
	t.Cleanup(func() {
		g.Stop(os.Kill, time.Minute)
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
	case <-g.Done():
		t.Fatalf("gateway exited before listening: %v\n%s", g.Err(), logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not listen within a minute:\n%s", logs.String())
	}
	g.hostKey = testkit.LoadKey(t, filepath.Join(lg.hostKeys, "ssh_host_ed25519_key")).AuthorizedKey()
	return g
}

// gatewayTempDir is a gateway's TMPDIR, short for the Unix sockets in it
// (agents, the local machines' tmux). A gateway killed at the end of a test
// closes no machine, so the cleanup also ends the tmux servers of its
// machines' persistent sessions, then removes the folder.
func gatewayTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sockets, _ := filepath.Glob(filepath.Join(dir, "cc-tmux-*", "tmux-*", "default"))
		for _, sock := range sockets {
			exec.Command("tmux", "-S", sock, "kill-server").Run()
		}
		os.RemoveAll(dir)
	})
	return dir
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gatewayProc) stop() {
	g.t.Helper()
	if !g.Stop(syscall.SIGTERM, 30*time.Second) {
		g.t.Fatalf("gateway did not exit within 30s of SIGTERM:\n%s", g.logs.String())
	}
	if err := g.Err(); err != nil {
		g.t.Fatalf("gateway exited with %v after SIGTERM:\n%s", err, g.logs.String())
	}
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

// person is someone with a key, who reaches a gateway with the real ssh.
type person struct {
	t       testing.TB
	dir     string
	key     testkit.Key
	keyPath string
}

func newPerson(t testing.TB, dir string) *person {
	t.Helper()
	return personWith(t, dir, testkit.NewKey(t), "id_ed25519")
}

// personWith is a person whose key is written to dir/file.
func personWith(t testing.TB, dir string, key testkit.Key, file string) *person {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &person{t: t, dir: dir, key: key, keyPath: key.WriteFile(t, filepath.Join(dir, file))}
}

// authorizedLine is the person's line in an allow list.
func (p *person) authorizedLine() string { return p.key.AuthorizedKey() + " person@test" }

// writeKeyList writes an allow list (for --users or --admins) that lets
// people in, and returns its path. It starts with a comment, as lists
// people write do.
func writeKeyList(t testing.TB, path string, people ...*person) string {
	t.Helper()
	list := "# people allowed in\n"
	for _, p := range people {
		list += p.authorizedLine() + "\n"
	}
	if err := os.WriteFile(path, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is one run of a tool.
type result struct {
	stdout, stderr string
	code           int
}

// runTool runs cmd, made with ctx, to its end. The error says the tool did
// not start or did not end before ctx; a failing tool is a result with its
// exit status. It calls no t method, so any goroutine may use it.
func runTool(ctx context.Context, cmd *exec.Cmd) (result, error) {
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if ctx.Err() != nil {
		return r, fmt.Errorf("did not finish in time: %w", ctx.Err())
	}
	r.code, err = exitStatus(err)
	return r, err
}

// exitStatus is the exit status in err, from running a tool; the error is
// for a tool that did not run to its end.
func exitStatus(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// ssh runs the OpenSSH client against the gateway, pinning its host key.
// Leading args that start with "-" are ssh options, the rest the command.
func (p *person) ssh(g *gatewayProc, stdin string, args ...string) result {
	p.t.Helper()
	// One ssh_config per run: runs happen at once, and the gateway (and so
	// its port) may change between them.
	dir, err := os.MkdirTemp(p.dir, "ssh")
	if err != nil {
		p.t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	config := testkit.WriteSSHConfig(p.t, dir, "person", p.keyPath, []testkit.Host{{Alias: "gw", Addr: g.addr, HostKey: g.hostKey}})
	opts := []string{"-F", config}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opts, args = append(opts, args[0]), args[1:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(append(opts, "gw"), args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	r, err := runTool(ctx, cmd)
	if err != nil {
		p.t.Fatalf("ssh %q: %v; stdout %q stderr %q", args, err, r.stdout, r.stderr)
	}
	return r
}

// statusDoc is what `status --json` prints.
type statusDoc struct {
	State     string    `json:"state"`
	Name      string    `json:"name"`
	LeaseID   string    `json:"lease_id"`
	Expires   time.Time `json:"expires"`
	ExpiresIn int64     `json:"expires_in_seconds"`
	Sessions  int       `json:"sessions"`
	Cost      float64   `json:"cost"`
	Currency  string    `json:"currency"`
	Address   string    `json:"address"`  // the machine's SSH address
	HostKey   string    `json:"host_key"` // the machine's, authorized_keys form
	Home      *struct {
		Name      string    `json:"name"`
		State     string    `json:"state"`
		KeptUntil time.Time `json:"kept_until"`
	} `json:"home"`
}

func (p *person) status(g *gatewayProc) statusDoc {
	p.t.Helper()
	r := p.ssh(g, "", "status", "--json")
	if r.code != 0 {
		p.t.Fatalf("status --json exited %d: %s", r.code, r.stderr)
	}
	var st statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		p.t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return st
}
