package proxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/proctree"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// sshd is a real OpenSSH server started for one test: the machine the
// gateway proxies to.
type sshd struct {
	addr    string
	user    string
	hostKey gossh.PublicKey
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *testkit.Buffer // the process writes while tests read
}

// target is how the pool reaches this sshd.
func (s *sshd) target() Target {
	return Target{Addr: s.addr, User: s.user, HostKey: s.hostKey}
}

// startSSHD starts /usr/sbin/sshd on a free loopback port, authorizing
// clientKey for the user running the test. extra lines go into sshd_config.
func startSSHD(t testing.TB, clientKey gossh.PublicKey, extra ...string) *sshd {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH server not installed")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create privilege separation dir: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	hostKey := testkit.NewKey(t)
	hostKeyPath := hostKey.WriteFile(t, filepath.Join(dir, "host_ed25519_key"))
	authPath := filepath.Join(dir, "authorized_keys")
	writeFile(t, authPath, gossh.MarshalAuthorizedKey(clientKey), 0o600)

	port := testkit.FreePort(t)
	cfg := []string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKeyPath,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authPath,
		"UsePAM no",
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"AcceptEnv CCGW_*",
		"LogLevel VERBOSE",
	}
	cfg = append(cfg, extra...)
	cfgPath := filepath.Join(dir, "sshd_config")
	writeFile(t, cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o600)

	s := &sshd{
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		user:    u.Username,
		hostKey: hostKey.Public(),
		exited:  make(chan struct{}),
		log:     &testkit.Buffer{},
	}
	s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log.String())
		}
	})
	s.waitReady(t)
	return s
}

// waitReady polls until sshd answers with its banner, or fails the test.
func (s *sshd) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("sshd exited early:\n%s", s.log.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return
			}
		}
		select {
		case <-s.exited:
		case <-time.After(20 * time.Millisecond): // poll interval, not synchronisation
		}
	}
	t.Fatalf("sshd did not come up on %s:\n%s", s.addr, s.log.String())
}

// killAll kills the listening sshd and every sshd process serving a
// connection, as if the machine vanished. Programs they started survive.
func (s *sshd) killAll(t testing.TB) {
	t.Helper()
	pids := sshdDescendants(t, s.cmd.Process.Pid)
	s.cmd.Process.Signal(syscall.SIGKILL)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// sshdDescendants lists the descendants of root whose command name starts
// with "sshd", read from /proc.
func sshdDescendants(t testing.TB, root int) []int {
	t.Helper()
	all, err := proctree.Descendants(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, pid := range all {
		// /proc/PID/comm: the command name, as /proc/PID/stat shows it.
		comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		if err == nil && strings.HasPrefix(string(comm), "sshd") {
			out = append(out, pid)
		}
	}
	return out
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(fmt.Errorf("write %s: %w", path, err))
	}
}
