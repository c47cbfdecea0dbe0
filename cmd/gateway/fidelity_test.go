package main

// Fidelity: the OpenSSH tools people use every day, through the gateway,
// against machines that run a real sshd (the local cloud's openssh kind),
// and what local mode's default builtin machines must do as sshd does.
// Where the right answer is "whatever OpenSSH does", the same command runs
// directly against the machine and the two results are compared.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proctree"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// rig is a gateway in local mode whose machines run sshd, one person with a
// machine, and an ssh_config that names the gateway "gw" and the person's
// machine, reached directly, "machine", so every OpenSSH tool can run both
// ways with -F.
type rig struct {
	t      *testing.T
	lg     *localGateway
	g      *gatewayProc
	p      *person
	dir    string // scratch space on this side
	config string // the ssh_config
	home   string // the machine's HOME, on this host's disk
	user   string // the instance user
	// fwdHost is where the machine's remote forwards listen: loopback for
	// sshd, the machine's own loopback address for a builtin machine.
	fwdHost string
}

func newRig(t *testing.T, extra ...string) *rig {
	t.Helper()
	return newRigOf(t, "openssh", localcloudtest.OpenSSHUser(t), extra...)
}

// newRigOf is a rig whose machines are of the given kind, logging in user.
func newRigOf(t *testing.T, kind, user string, extra ...string) *rig {
	t.Helper()
	// No firewall: status shows the machine's address, for the tests that
	// compare the proxied machine with the machine reached directly.
	lg := newLocalGateway(t, append([]string{"--local-machines", kind, "--instance-user", user, "--firewall-sources", "none"}, extra...)...)
	r := &rig{t: t, lg: lg, g: lg.start(t), dir: filepath.Join(lg.dir, "client"), user: user, fwdHost: "127.0.0.1"}
	r.p = newPerson(t, r.dir)
	if res := r.p.ssh(r.g, "", "true"); res.code != 0 {
		t.Fatalf("first connection: %+v", res)
	}
	st := r.p.status(r.g)
	r.home = filepath.Join(lg.dir, "data", "localcloud", "machines", st.Name, machine.HomeDir)
	if kind == "builtin" {
		r.fwdHost, _, _ = net.SplitHostPort(st.Address)
	}
	// The person's key is authorized on the gateway and on the machine.
	r.config = testkit.WriteSSHConfig(t, r.dir, user, r.p.keyPath, []testkit.Host{
		{Alias: "gw", Addr: r.g.addr, HostKey: r.g.hostKey},
		{Alias: "machine", Addr: st.Address, HostKey: st.HostKey},
	})
	return r
}

// command prepares a tool run: -F for OpenSSH tools is up to the caller,
// git and rsync find it through their environment. No agent unless asked.
func (r *rig) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "GIT_SSH_COMMAND=ssh -F "+r.config, "LC_ALL=C")
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a tool to its end, within three minutes.
func (r *rig) run(stdin io.Reader, env []string, name string, args ...string) result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := r.command(ctx, env, name, args...)
	cmd.Stdin = stdin
	res, err := runTool(ctx, cmd)
	if err != nil {
		r.t.Fatalf("%s %q: %v; stderr %q", name, args, err, res.stderr)
	}
	return res
}

// ssh runs ssh with the rig's config: host is "gw" or "machine".
func (r *rig) ssh(stdin io.Reader, args ...string) result {
	r.t.Helper()
	return r.run(stdin, nil, "ssh", append([]string{"-F", r.config}, args...)...)
}

// background is a tool left running, stopped at the end of the test.
type background struct {
	*testkit.Process
	stderr *testkit.Buffer
}

func (r *rig) start(env []string, name string, args ...string) *background {
	r.t.Helper()
	cmd := r.command(context.Background(), env, name, args...)
	b := &background{stderr: &testkit.Buffer{}}
	cmd.Stderr = b.stderr
	var err error
	if b.Process, err = testkit.StartProcess(cmd); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { b.stop(r.t) })
	return b
}

// startMaster starts an OpenSSH ControlMaster connection to the gateway,
// on socket ctl, with ssh options opts, and waits until it is up.
func (r *rig) startMaster(t *testing.T, ctl string, opts ...string) *background {
	t.Helper()
	args := append(append([]string{"-F", r.config}, opts...), "-M", "-S", ctl, "-N", "gw")
	master := r.start(nil, "ssh", args...)
	testkit.Eventually(t, 30*time.Second, func() error {
		if res := r.ssh(nil, "-S", ctl, "-O", "check", "gw"); res.code != 0 {
			return fmt.Errorf("the master connection is not up: %+v", res)
		}
		return nil
	})
	return master
}

// stop ends the process with SIGTERM, or kills it after 20s.
func (b *background) stop(t *testing.T) {
	if !b.Stop(syscall.SIGTERM, 20*time.Second) {
		t.Errorf("%s ignored SIGTERM for 20s", b.Cmd.Path)
	}
}

// writeRandom writes n bytes of a fixed-seed stream to path and returns
// their SHA-256, hashing while it writes.
func writeRandom(t *testing.T, path string, n int64, seed byte) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{seed})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		src.Read(chunk)
		h.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		left -= int64(len(chunk))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestFidelity runs the everyday OpenSSH tools through the gateway.
func TestFidelity(t *testing.T) {
	r := newRig(t)
	t.Run("exec", r.testExec)
	t.Run("terminal", r.testTerminal)
	t.Run("file tools", r.testFileTools)
	t.Run("large files", r.testLargeFiles)
	t.Run("local forward", r.testLocalForward)
	t.Run("remote forward", r.testRemoteForward)
	t.Run("remote forward over ControlMaster", r.testControlMasterForward)
	t.Run("agent", r.testAgent)
	t.Run("ControlMaster", r.testControlMaster)
	t.Run("keepalive", r.testKeepalive)
	t.Run("tilde user", r.testTildeUser)
	t.Run("relative paths", r.testRelativePaths)
	t.Run("command too long", r.testCommandTooLong)
	// Everyday use hits none of the limits on what one person may hold;
	// only the ControlMaster's eleventh session does, on purpose.
	for _, line := range strings.Split(r.g.logs.String(), "\n") {
		if strings.Contains(line, `msg="limit hit"`) && !strings.Contains(line, `limit="sessions per connection"`) {
			t.Errorf("everyday use hit a limit: %s", line)
		}
	}
}

// TestFidelityBuiltin: local mode's default machines, the in-process SSH
// server, do what people and tools (Ansible) ask of sshd.
func TestFidelityBuiltin(t *testing.T) {
	r := newRigOf(t, "builtin", "claude")
	t.Run("remote forward", r.testRemoteForward)
	t.Run("remote forward over ControlMaster", r.testControlMasterForward)
	t.Run("agent", r.testAgent)
	t.Run("tilde user", r.testTildeUser)
	t.Run("relative paths", r.testRelativePaths)
	t.Run("command too long", r.testCommandTooLong)
}

// testExec: stdin streams with its EOF, output is binary-exact, and exit
// statuses and signals reach the client as they do from the machine.
func (r *rig) testExec(t *testing.T) {
	src := filepath.Join(r.dir, "exec.bin")
	sum := writeRandom(t, src, 16<<20, 1)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := r.ssh(f, "gw", "sha256sum")
	if res.code != 0 || !strings.HasPrefix(res.stdout, sum+" ") {
		t.Errorf("cat big | ssh gw sha256sum: code %d stdout %q stderr %q; want %s", res.code, res.stdout, res.stderr, sum)
	}

	// Binary output, byte for byte: a copy of the file the machine has.
	if err := os.WriteFile(filepath.Join(r.home, "exec.bin"), mustRead(t, src), 0o600); err != nil {
		t.Fatal(err)
	}
	res = r.ssh(nil, "gw", `cat "$HOME/exec.bin"`)
	if got := sha256.Sum256([]byte(res.stdout)); res.code != 0 || hex.EncodeToString(got[:]) != sum {
		t.Errorf("cat through the gateway: code %d, %d bytes that differ from the file", res.code, len(res.stdout))
	}

	for _, cmd := range []string{
		"exit 0", "exit 3", "exit 255",
		`printf 'a\nb\r\n\000\377'`,      // no newline rewriting without a terminal
		"echo out; echo err >&2; exit 4", // streams kept apart
		"kill -TERM $$", "kill -KILL $$", // exit-signal, reported as the client does
		"sleep 1 & exec kill -HUP $$",       // a signal while a child holds the output
		"head -c 1000000 /dev/zero; exit 9", // output drained before the exit status
		"echo $SSH_CONNECTION | wc -w",      // a real sshd session
		"tty; echo tty=$?",                  // no terminal unless asked
		"cat /nonexistent 2>&1; echo done",
	} {
		direct := r.ssh(nil, "machine", cmd)
		proxied := r.ssh(nil, "gw", cmd)
		if direct != proxied {
			t.Errorf("%q:\n through the gateway %+v\n directly            %+v", cmd, proxied, direct)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testTerminal drives a real terminal (tmux) running ssh: the client's
// terminal modes reach the machine, resizes arrive mid-session, a
// full-screen editor works, control keys pass raw, and -tt output is
// byte-for-byte what the machine sends.
func (r *rig) testTerminal(t *testing.T) {
	for _, cmd := range []string{
		`printf 'a\nb\r\n\033[1mbold\033[0m\t\377\000end'`,
		`stty size; stty -a | head -1`,
	} {
		direct := r.ssh(nil, "-tt", "machine", cmd)
		proxied := r.ssh(nil, "-tt", "gw", cmd)
		if direct != proxied {
			t.Errorf("-tt %q:\n through the gateway %+v\n directly            %+v", cmd, proxied, direct)
		}
	}

	// The plain shell (`shell`): a persistent session's program runs on
	// the terminal of the machine's tmux, which has modes of its own
	// (sessions_test.go tests those sessions).
	term := newTerminals(t, r)
	// The local terminal interrupts with ^G, not ^C: the machine must use
	// the client's modes.
	term.open("t", "stty intr ^G && exec ssh -t -F "+r.config+" gw shell")
	waitFor := func(want string) { t.Helper(); term.waitFor("t", want) }
	waitGone := func(gone string) { t.Helper(); term.waitGone("t", gone) }
	keys := func(k ...string) { t.Helper(); term.keys("t", k...) }

	keys("echo READY$((40+2))", "Enter")
	waitFor("READY42")
	keys("stty -a | grep -o 'intr = [^;]*' | sed 's/^/mode: /'", "Enter")
	waitFor("mode: intr = ^G")
	keys("echo size: $(stty size)", "Enter")
	waitFor("size: 24 80")
	term.resize("t", 100, 30)
	keys("clear; echo size: $(stty size)", "Enter")
	waitFor("size: 30 100")

	// ^G interrupts a running program on the machine. (bash abandons the
	// rest of a command line on an interrupt, hence the second line.) The
	// marker is printed by the process that then becomes sleep, with
	// SIGINT at its default: seen on screen, an interrupt cannot fall in
	// bash's window between fork and exec, where it would be lost. It is
	// computed, so the typed command line does not already show it.
	keys("clear; sh -c 'echo SLEEPING$((6*7)); exec sleep 60'", "Enter")
	waitFor("SLEEPING42")
	keys("C-g")
	keys("echo status=$?", "Enter")
	waitFor("status=130")

	if _, err := exec.LookPath("vi"); err == nil {
		// Step by step: a full-screen program owns the keyboard, and
		// keys typed ahead might be read by the wrong program.
		keys("clear; vi -u NONE -N \"$HOME/edited.txt\"", "Enter")
		waitFor("edited.txt")
		keys("i")
		waitFor("-- INSERT --")
		keys("typed in vi")
		waitFor("typed in vi")
		keys("Escape")
		waitGone("-- INSERT --")
		keys(":wq", "Enter")
		waitGone("typed in vi") // vi has left its screen
		keys("clear; echo vi=$?", "Enter")
		waitFor("vi=0")
		if got, err := os.ReadFile(filepath.Join(r.home, "edited.txt")); err != nil || string(got) != "typed in vi\n" {
			t.Errorf("file written by vi through the gateway: %q, %v", got, err)
		}
	} else {
		t.Log("vi not installed: skipping the full-screen editor")
	}

	keys("exit", "Enter")
	term.waitClosed("t")
}

// shortTempDir is a temporary folder with a short path, for Unix sockets
// (their paths are limited to about 100 bytes).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testFileTools: sftp, scp in both modes, rsync and git, each way.
func (r *rig) testFileTools(t *testing.T) {
	local := filepath.Join(r.dir, "tools.bin")
	sum := writeRandom(t, local, 8<<20, 2)
	remote := func(name string) string { return filepath.Join(r.home, name) }
	check := func(what, path string) {
		t.Helper()
		if got := hashFile(t, path); got != sum {
			t.Errorf("%s: %s has hash %s, want %s", what, path, got, sum)
		}
	}
	ok := func(what string, res result) {
		t.Helper()
		if res.code != 0 {
			t.Fatalf("%s: %+v", what, res)
		}
	}

	batch := fmt.Sprintf("put %s %s\nget %s %s\nls -l %s\n", local, remote("sftp.bin"), remote("sftp.bin"), filepath.Join(r.dir, "sftp.back"), remote("sftp.bin"))
	ok("sftp", r.run(strings.NewReader(batch), nil, "sftp", "-F", r.config, "-b", "-", "gw"))
	check("sftp put", remote("sftp.bin"))
	check("sftp get", filepath.Join(r.dir, "sftp.back"))

	for _, mode := range []struct{ name, flag string }{{"scp", "-s"}, {"scp -O", "-O"}} {
		up, back := remote(strings.ReplaceAll(mode.name, " ", "")+".bin"), filepath.Join(r.dir, strings.ReplaceAll(mode.name, " ", "")+".back")
		ok(mode.name+" upload", r.run(nil, nil, "scp", "-F", r.config, mode.flag, "-p", local, "gw:"+up))
		check(mode.name+" upload", up)
		ok(mode.name+" download", r.run(nil, nil, "scp", "-F", r.config, mode.flag, "gw:"+up, back))
		check(mode.name+" download", back)
	}

	rsyncSSH := "ssh -F " + r.config
	ok("rsync upload", r.run(nil, nil, "rsync", "-a", "-e", rsyncSSH, local, "gw:"+remote("rsync.bin")))
	check("rsync upload", remote("rsync.bin"))
	ok("rsync download", r.run(nil, nil, "rsync", "-a", "-e", rsyncSSH, "gw:"+remote("rsync.bin"), filepath.Join(r.dir, "rsync.back")))
	check("rsync download", filepath.Join(r.dir, "rsync.back"))
	// A second run sends only the differences: rsync's own protocol both ways.
	if err := os.WriteFile(filepath.Join(r.dir, "rsync.back"), append(mustRead(t, local)[:1<<20], "changed"...), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("rsync delta", r.run(nil, nil, "rsync", "-a", "--no-whole-file", "-e", rsyncSSH, "gw:"+remote("rsync.bin"), filepath.Join(r.dir, "rsync.back")))
	check("rsync delta", filepath.Join(r.dir, "rsync.back"))

	repo := remote("repo.git")
	ok("git init on the machine", r.ssh(nil, "gw", "git init -q --bare "+repo))
	work := filepath.Join(r.dir, "work")
	gitIn := func(dir string, args ...string) result {
		return r.run(nil, []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"},
			"git", append([]string{"-C", dir}, args...)...)
	}
	ok("git init", r.run(nil, nil, "git", "init", "-q", "-b", "main", work))
	if err := os.WriteFile(filepath.Join(work, "data.bin"), mustRead(t, local), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("git add", gitIn(work, "add", "data.bin"))
	ok("git commit", gitIn(work, "commit", "-q", "-m", "data"))
	ok("git push", gitIn(work, "push", "-q", "gw:"+repo, "main"))
	clone := filepath.Join(r.dir, "clone")
	ok("git clone", r.run(nil, nil, "git", "clone", "-q", "-b", "main", "gw:"+repo, clone))
	check("git clone", filepath.Join(clone, "data.bin"))
}

// testLargeFiles moves 256 MiB each way over sftp and checks every byte by
// hash. AES-GCM keeps the race-instrumented gateway fast enough; the other
// tests use the client's default cipher.
func (r *rig) testLargeFiles(t *testing.T) {
	const size = 256 << 20
	up := filepath.Join(r.dir, "large.up")
	upSum := writeRandom(t, up, size, 3)
	down := filepath.Join(r.home, "large.down")
	downSum := writeRandom(t, down, size, 4)
	back := filepath.Join(r.dir, "large.back")
	batch := fmt.Sprintf("put %s %s\nget %s %s\n", up, filepath.Join(r.home, "large.up"), down, back)
	res := r.run(strings.NewReader(batch), nil, "sftp", "-F", r.config, "-c", "aes128-gcm@openssh.com", "-b", "-", "gw")
	if res.code != 0 {
		t.Fatalf("sftp: %+v", res)
	}
	if got := hashFile(t, filepath.Join(r.home, "large.up")); got != upSum {
		t.Errorf("256 MiB upload arrived with hash %s, want %s", got, upSum)
	}
	if got := hashFile(t, back); got != downSum {
		t.Errorf("256 MiB download arrived with hash %s, want %s", got, downSum)
	}
	for _, p := range []string{up, down, back, filepath.Join(r.home, "large.up")} {
		os.Remove(p)
	}
}

// echoPort is the port of an echo server on loopback.
func echoPort(t *testing.T) int { return testkit.EchoServer(t).Addr().(*net.TCPAddr).Port }

// roundTrip sends n random bytes to an echo server at addr, sends EOF,
// and checks that the same bytes come back followed by EOF.
func roundTrip(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return testkit.EchoTrip(c, n)
}

// testLocalForward: ssh -N -L reaches a server by a name the machine
// resolves ("localhost"), carries data both ways with EOF, and ends cleanly.
func (r *rig) testLocalForward(t *testing.T) {
	echo := echoPort(t)
	lport := localcloudtest.FreePort(t)
	fwd := r.start(nil, "ssh", "-F", r.config, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:localhost:%d", lport, echo), "gw")
	addr := fmt.Sprintf("127.0.0.1:%d", lport)
	testkit.Eventually(t, 30*time.Second, func() error { return roundTrip(addr, 1<<20) }) // ssh -L is up
	// Several at once, on one client connection.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- roundTrip(addr, 4<<20) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// A port nobody listens on: the machine refuses, and the client tells
	// it as it would directly.
	closed := fmt.Sprintf("localhost:%d", localcloudtest.FreePort(t))
	direct := r.ssh(nil, "-W", closed, "machine")
	proxied := r.ssh(nil, "-W", closed, "gw")
	if proxied.code == 0 || proxied != direct {
		t.Errorf("ssh -W to a closed port:\n through the gateway %+v\n directly            %+v", proxied, direct)
	}
	fwd.stop(t)
}

// testRemoteForward: ssh -N -R listens on the machine and connections come
// back to the client; a chosen port (0) is reported; disconnecting frees the
// port on the machine for the next client.
func (r *rig) testRemoteForward(t *testing.T) {
	echo := echoPort(t)
	rport := localcloudtest.FreePort(t)
	spec := fmt.Sprintf("127.0.0.1:%d:localhost:%d", rport, echo)
	addr := net.JoinHostPort(r.fwdHost, strconv.Itoa(rport))
	for round := range 2 {
		fwd := r.start(nil, "ssh", "-F", r.config, "-N", "-o", "ExitOnForwardFailure=yes", "-R", spec, "gw")
		testkit.Eventually(t, 30*time.Second, func() error {
			select {
			case <-fwd.Done():
				t.Fatalf("ssh -R exited: %v: %s", fwd.Err(), fwd.stderr.String())
			default:
			}
			if err := roundTrip(addr, 1<<20); err != nil {
				return fmt.Errorf("round trip through ssh -R, connection %d: %w", round+1, err)
			}
			return nil
		})
		fwd.stop(t)
	}

	// Port 0: the machine picks, the client is told.
	fwd := r.start(nil, "ssh", "-F", r.config, "-o", "LogLevel=INFO", "-N", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("127.0.0.1:0:localhost:%d", echo), "gw")
	allocated := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
	var port string
	testkit.Eventually(t, 30*time.Second, func() error {
		m := allocated.FindStringSubmatch(fwd.stderr.String())
		if m == nil {
			return fmt.Errorf("ssh reports no allocated port: stderr %q", fwd.stderr.String())
		}
		port = m[1]
		return nil
	})
	if err := roundTrip(net.JoinHostPort(r.fwdHost, port), 1<<20); err != nil {
		t.Errorf("through the allocated port %s: %v", port, err)
	}
	fwd.stop(t)
}

// testControlMasterForward: remote forwards added to and cancelled on a
// ControlMaster connection (ssh -O forward -R, as Ansible's ControlPersist
// connections would), with a port and with port 0.
func (r *rig) testControlMasterForward(t *testing.T) {
	echo := echoPort(t)
	ctl := filepath.Join(shortTempDir(t), "cm")
	r.startMaster(t, ctl)
	target := fmt.Sprintf("localhost:%d", echo)
	res := r.ssh(nil, "-S", ctl, "-O", "forward", "-R", "0:"+target, "gw")
	port := strings.TrimSpace(res.stdout)
	if res.code != 0 || port == "" {
		t.Fatalf("-O forward -R 0: %+v", res)
	}
	if err := roundTrip(net.JoinHostPort(r.fwdHost, port), 1<<20); err != nil {
		t.Errorf("-O forward -R 0, through port %s: %v", port, err)
	}
	spec := fmt.Sprintf("%d:%s", localcloudtest.FreePort(t), target)
	if res := r.ssh(nil, "-S", ctl, "-O", "forward", "-R", spec, "gw"); res.code != 0 {
		t.Fatalf("-O forward -R %s: %+v", spec, res)
	}
	addr := net.JoinHostPort(r.fwdHost, strings.Split(spec, ":")[0])
	if err := roundTrip(addr, 1<<20); err != nil {
		t.Errorf("-O forward -R %s: %v", spec, err)
	}
	if res := r.ssh(nil, "-S", ctl, "-O", "cancel", "-R", spec, "gw"); res.code != 0 {
		t.Fatalf("-O cancel -R %s: %+v", spec, res)
	}
	// The machine closes its listener as it answers.
	testkit.Eventually(t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
			return errors.New(addr + " still listens after -O cancel")
		}
		return nil
	})
	if res := r.ssh(nil, "-S", ctl, "-O", "exit", "gw"); res.code != 0 {
		t.Errorf("ssh -O exit: %+v", res)
	}
}

// testTildeUser: what Ansible runs first, then its scp transfers (both
// modes) to the temporary folder it made under ~USER.
func (r *rig) testTildeUser(t *testing.T) {
	requireNSSWrapper(t)
	tilde := "~" + r.user
	res := r.ssh(nil, "gw", fmt.Sprintf(`/bin/sh -c 'echo %s && mkdir -p %s/.ansible/tmp'`, tilde, tilde))
	if res.code != 0 || res.stdout != r.home+"\n" {
		t.Fatalf("echo %s: %+v, want %s", tilde, res, r.home)
	}
	local := filepath.Join(r.dir, "module.py")
	if err := os.WriteFile(local, []byte("print('hi')\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"-s", "-O"} {
		remote := tilde + "/.ansible/tmp/module" + mode + ".py"
		if res := r.run(nil, nil, "scp", "-F", r.config, mode, local, "gw:"+remote); res.code != 0 {
			t.Errorf("scp %s to %s: %+v", mode, remote, res)
		}
		if _, err := os.Stat(filepath.Join(r.home, ".ansible", "tmp", "module"+mode+".py")); err != nil {
			t.Errorf("scp %s to %s: %v", mode, remote, err)
		}
	}
	if _, err := os.Stat(filepath.Join(r.home, tilde)); err == nil {
		t.Errorf("a literal %s folder was made in the home folder", tilde)
	}
}

// testRelativePaths: sessions start in the machine's home folder, so
// relative sftp and scp paths land there.
func (r *rig) testRelativePaths(t *testing.T) {
	requireNSSWrapper(t)
	if res := r.ssh(nil, "gw", "pwd"); res.stdout != r.home+"\n" {
		t.Errorf("pwd: %+v, want %s", res, r.home)
	}
	local := filepath.Join(r.dir, "relative.txt")
	if err := os.WriteFile(local, []byte("relative\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := r.run(strings.NewReader("put "+local+" rel-sftp\n"), nil, "sftp", "-F", r.config, "-b", "-", "gw"); res.code != 0 {
		t.Fatalf("sftp: %+v", res)
	}
	for _, mode := range []string{"-s", "-O"} {
		if res := r.run(nil, nil, "scp", "-F", r.config, mode, local, "gw:rel-scp"+mode); res.code != 0 {
			t.Fatalf("scp %s: %+v", mode, res)
		}
	}
	for _, name := range []string{"rel-sftp", "rel-scp-s", "rel-scp-O"} {
		if got, err := os.ReadFile(filepath.Join(r.home, name)); err != nil || string(got) != "relative\n" {
			t.Errorf("%s: %q, %v; want it in the machine's home folder", name, got, err)
		}
	}
}

// requireNSSWrapper skips a test of what the instance user's home gives.
func requireNSSWrapper(t *testing.T) {
	t.Helper()
	if machine.NSSWrapper() == "" {
		t.Skip("libnss_wrapper.so not installed (Debian: libnss-wrapper): local machines' instance user has no home")
	}
}

// testCommandTooLong: a command over the 128 kB the kernel allows one
// argument fails as sshd reports it: the shell's error, exit status 1.
func (r *rig) testCommandTooLong(t *testing.T) {
	// ssh joins its arguments into the one command the shell runs.
	words := append([]string{":"}, slices.Repeat([]string{"xxxxxxxxx"}, 15_000)...)
	words = append(words, "; echo ran")
	direct := r.ssh(nil, append([]string{"machine"}, words...)...)
	proxied := r.ssh(nil, append([]string{"gw"}, words...)...)
	if proxied.code != 1 || proxied.stdout != "" || !strings.HasSuffix(proxied.stderr, ": Argument list too long\n") || proxied != direct {
		t.Errorf("a 150 kB command:\n through the gateway %+v\n directly            %+v\nwant exit 1 and the shell's error", proxied, direct)
	}
}

// testAgent: with -A, a key held by the client's ssh-agent signs on the
// machine; without -A it cannot.
func (r *rig) testAgent(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "agent")
	r.start(nil, "ssh-agent", "-D", "-a", sock)
	testkit.Eventually(t, 10*time.Second, func() error { // ssh-agent listens
		_, err := os.Stat(sock)
		return err
	})
	env := []string{"SSH_AUTH_SOCK=" + sock}
	signing := testkit.NewKey(t)
	key := signing.WriteFile(t, filepath.Join(r.dir, "signing_key"))
	if res := r.run(nil, env, "ssh-add", "-q", key); res.code != 0 {
		t.Fatalf("ssh-add: %+v", res)
	}
	// Only the public half goes to the machine.
	if err := os.WriteFile(filepath.Join(r.home, "signing_key.pub"), []byte(signing.AuthorizedKey()+" signing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sign := `echo "signed on the machine" | ssh-keygen -Y sign -q -n test -f "$HOME/signing_key.pub"`
	res := r.run(nil, env, "ssh", "-F", r.config, "-A", "gw", sign)
	if res.code != 0 || !strings.Contains(res.stdout, "BEGIN SSH SIGNATURE") {
		t.Fatalf("signing with the forwarded agent: %+v", res)
	}
	sig := filepath.Join(r.dir, "sig")
	if err := os.WriteFile(sig, []byte(res.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := r.run(strings.NewReader("signed on the machine\n"), nil, "ssh-keygen", "-Y", "check-novalidate", "-n", "test", "-s", sig)
	if verify.code != 0 {
		t.Errorf("the machine's signature does not verify: %+v", verify)
	}
	if res := r.run(nil, env, "ssh", "-F", r.config, "gw", sign); res.code == 0 {
		t.Errorf("signing without -A worked: %+v", res)
	}
}

// testControlMaster: one client connection carries as many sessions as
// sshd allows on one (MaxSessions 10, the gateway's default), all at once;
// the next one is refused, as sshd would, until one of them ends.
func (r *rig) testControlMaster(t *testing.T) {
	ctl := filepath.Join(shortTempDir(t), "cm")
	master := r.startMaster(t, ctl, "-o", "LogLevel=INFO")
	const n = 10
	type session struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
		exit  chan error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sessions []*session
	for i := range n {
		cmd := r.command(ctx, nil, "ssh", "-F", r.config, "-S", ctl, "gw", "echo ready; exec cat")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s := &session{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), exit: make(chan error, 1)}
		sessions = append(sessions, s)
		if line, err := s.out.ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("session %d: first line %q, %v", i+1, line, err)
		}
	}
	// All n are open now: the master is refused one more, and says why
	// (before it answers the client); ssh falls back to a connection of
	// its own, as it does against sshd.
	res := r.ssh(nil, "-S", ctl, "gw", "echo ran")
	if res.code != 0 || res.stdout != "ran\n" || !strings.Contains(res.stderr, "refused by peer") {
		t.Errorf("session %d: %+v, want refused by the master's connection, then run on its own", n+1, res)
	}
	if why := master.stderr.String(); !strings.Contains(why, "open failed: resource shortage: cc-gateway: this connection already has 10 sessions open") {
		t.Errorf("the master said %q, want why it was refused", why)
	}
	// Each echoes its own line and ends on EOF.
	for i, s := range sessions {
		fmt.Fprintf(s.stdin, "session %d\n", i)
		s.stdin.Close()
	}
	for i, s := range sessions {
		rest, err := io.ReadAll(s.out)
		if err != nil || string(rest) != fmt.Sprintf("session %d\n", i) {
			t.Errorf("session %d echoed %q, %v", i, rest, err)
		}
		if err := s.cmd.Wait(); err != nil {
			t.Errorf("session %d: %v", i, err)
		}
	}
	// Their places are free again, once the gateway has seen them end.
	testkit.Eventually(t, 10*time.Second, func() error {
		if res := r.ssh(nil, "-S", ctl, "gw", "echo ran"); res.code != 0 || res.stdout != "ran\n" {
			return fmt.Errorf("no session once the others ended: %+v", res)
		}
		return nil
	})
	if res := r.ssh(nil, "-S", ctl, "-O", "exit", "gw"); res.code != 0 {
		t.Errorf("ssh -O exit: %+v", res)
	}
	select {
	case <-master.Done():
	case <-time.After(20 * time.Second):
		t.Error("master still running 20s after -O exit")
	}
}

// testKeepalive: the client's keepalives are answered, so a quiet session
// outlives ServerAliveInterval × ServerAliveCountMax.
func (r *rig) testKeepalive(t *testing.T) {
	res := r.ssh(nil, "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=1", "gw", "sleep 4; echo alive")
	if res.code != 0 || res.stdout != "alive\n" {
		t.Errorf("quiet session with keepalives: %+v", res)
	}
}

// TestMachineGoneEndsSession: a machine that goes away mid-session (stopped
// from another connection, destroyed, or its sshd killed) ends the session
// at once with a sentence that says what happened and exit status 255.
func TestMachineGoneEndsSession(t *testing.T) {
	r := newRig(t)
	// Forwards only (ssh -N -R): no session to say anything on, so the
	// client connection is closed and ssh ends. (First: the cases below
	// leave the machine broken.)
	t.Run("forwards only", func(t *testing.T) {
		echo := echoPort(t)
		rport := localcloudtest.FreePort(t)
		fwd := r.start(nil, "ssh", "-F", r.config, "-N", "-o", "ExitOnForwardFailure=yes",
			"-R", fmt.Sprintf("127.0.0.1:%d:localhost:%d", rport, echo), "gw")
		testkit.Eventually(t, 30*time.Second, func() error { // ssh -R is up
			return roundTrip(fmt.Sprintf("127.0.0.1:%d", rport), 1000)
		})
		if res := r.p.ssh(r.g, "", "stop"); res.code != 0 {
			t.Fatalf("stop: %+v", res)
		}
		select {
		case <-fwd.Done():
			if code, err := exitStatus(fwd.Err()); err != nil || code != 255 {
				t.Errorf("ssh -N -R ended with %v, want exit status 255", fwd.Err())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ssh -N -R still running 30s after its machine stopped")
		}
	})

	for _, c := range []struct {
		name   string
		cause  func()
		stderr string
	}{
		{"stop", func() {
			if res := r.p.ssh(r.g, "", "stop"); res.code != 0 {
				t.Fatalf("stop: %+v", res)
			}
		}, "was stopped, which ended this session; `ssh -p "},
		{"destroy", func() {
			if res := r.p.ssh(r.g, "", "destroy", "--yes"); res.code != 0 {
				t.Fatalf("destroy: %+v", res)
			}
		}, "your machine was destroyed"},
		{"sshd killed", r.killSSHD, "connection to your machine was lost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The session starts the machine again if the case before
			// stopped or destroyed it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := r.command(ctx, nil, "ssh", "-F", r.config, "gw", "echo started; exec sleep 300")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr testkit.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "started\n" {
				t.Fatalf("first line %q, %v; stderr %q", line, err, stderr.String())
			}
			c.cause()
			exit := make(chan error, 1)
			go func() { exit <- cmd.Wait() }()
			select {
			case err := <-exit:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 255 {
					t.Errorf("session ended with %v, want exit status 255", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("session still running 30s after the machine went away; stderr %q", stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q, want it to say %q", stderr.String(), c.stderr)
			}
		})
	}

	// The cloud still says the machine runs, but its sshd is gone: the next
	// connection finds it silent and restarts it.
	res := r.p.ssh(r.g, "", "echo back")
	if res.code != 0 || res.stdout != "back\n" || !strings.Contains(res.stderr, "does not answer on SSH; restarting it") {
		t.Errorf("after sshd died: %+v", res)
	}
}

// killSSHD kills the machine's sshd and everything it started, as if the
// machine had vanished without a word. The local cloud still believes it
// runs.
func (r *rig) killSSHD() {
	r.t.Helper()
	st := r.p.status(r.g)
	pidFile := filepath.Join(r.lg.dir, "data", "localcloud", "machines", st.Name, "sshd.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		r.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		r.t.Fatalf("%s: %v", pidFile, err)
	}
	// Stop sshd first so it forks nothing new, then its descendants.
	syscall.Kill(pid, syscall.SIGSTOP)
	descendants, err := proctree.Descendants(pid)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, d := range descendants {
		syscall.Kill(d, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}
