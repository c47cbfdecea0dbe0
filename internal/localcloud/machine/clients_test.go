package machine

// What Ansible, scp, sftp and ssh's forwarding options need from a machine,
// driven with the real OpenSSH clients on both kinds: the builtin machine
// must answer as sshd does.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// forwardHost is where the kind's remote forwards listen: sshd on loopback
// (127.0.0.1), the builtin machine on its own loopback address.
func (f *fixture) forwardHost() string {
	if f.kind.name == "builtin" {
		return f.host
	}
	return "127.0.0.1"
}

// banner checks that what comes through a forward to addr is an SSH
// server's version line. (The gateway's fidelity tests send data both ways
// through forwards.)
func banner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the banner through %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("through %s came %q, not an SSH banner", addr, line)
	}
	return nil
}

// start runs an OpenSSH tool until the test ends and returns its stderr,
// line by line.
func start(t *testing.T, name string, args ...string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	return lines(stderr)
}

func TestRemoteForward(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		// Forwards lead back to the machine's own SSH port.
		target := net.JoinHostPort(f.host, f.port)
		dest := f.kind.user + "@" + f.host

		// ssh -R 0: the machine picks a port and the client is told.
		stderr := start(t, "ssh", append(f.sshArgs(f.user), "-p", f.port, "-v", // -v: the allocated port is logged at INFO
			"-o", "ExitOnForwardFailure=yes", "-N", "-R", "0:"+target, dest)...)
		allocated := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
		var port string
		for port == "" {
			if m := allocated.FindStringSubmatch(next(t, stderr)); m != nil {
				port = m[1]
			}
		}
		if err := banner(net.JoinHostPort(f.forwardHost(), port)); err != nil {
			t.Errorf("ssh -R 0, through port %s: %v", port, err)
		}

		// Over a ControlMaster, as Ansible's ControlPersist does:
		// -O forward with port 0 and with a port, and -O cancel.
		ctl := filepath.Join(t.TempDir(), "cm") // well within the ~100 bytes of a socket path
		cm := func(extra ...string) result {
			return run(t, nil, "ssh", append(append(f.sshArgs(f.user), "-p", f.port, "-S", ctl), append(extra, dest)...)...)
		}
		start(t, "ssh", append(f.sshArgs(f.user), "-p", f.port, "-M", "-S", ctl, "-N", dest)...)
		eventually(t, "the master connection is up", func() bool { return cm("-O", "check").code == 0 })
		r := cm("-O", "forward", "-R", "0:"+target)
		chosen := strings.TrimSpace(r.stdout)
		if r.code != 0 || chosen == "" {
			t.Fatalf("-O forward -R 0: %+v", r)
		}
		if err := banner(net.JoinHostPort(f.forwardHost(), chosen)); err != nil {
			t.Errorf("-O forward -R 0, through port %s: %v", chosen, err)
		}
		_, fixed := freeAddr(t)
		spec := fixed + ":" + target
		if r := cm("-O", "forward", "-R", spec); r.code != 0 {
			t.Fatalf("-O forward -R %s: %+v", spec, r)
		}
		addr := net.JoinHostPort(f.forwardHost(), fixed)
		if err := banner(addr); err != nil {
			t.Errorf("-O forward -R %s: %v", spec, err)
		}
		if r := cm("-O", "cancel", "-R", spec); r.code != 0 {
			t.Fatalf("-O cancel -R %s: %+v", spec, r)
		}
		// sshd closes the listener just after its reply.
		eventually(t, addr+" stops listening after -O cancel", func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
		cm("-O", "exit")
	})
}

func TestAgentForwarding(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		sock := filepath.Join(t.TempDir(), "agent")
		start(t, "ssh-agent", "-D", "-a", sock)
		eventually(t, "ssh-agent listens", func() bool { _, err := os.Stat(sock); return err == nil })
		add := exec.Command("ssh-add", "-q", f.other.file)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v: %s", err, out)
		}
		want := strings.Fields(string(ssh.MarshalAuthorizedKey(f.other.Public())))[1]

		agentSSH := func(flag, command string) result {
			t.Helper()
			return run(t, nil, "ssh", append(f.agentArgs(f.user, sock), "-p", f.port, flag, f.kind.user+"@"+f.host, command)...)
		}
		r := agentSSH("-A", `ssh-add -L && test -S "$SSH_AUTH_SOCK" && echo socket`)
		if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.HasSuffix(r.stdout, "socket\n") {
			t.Errorf("ssh -A, ssh-add -L on the machine: %+v; want the agent's key", r)
		}
		if r := agentSSH("-a", "ssh-add -L"); r.code == 0 {
			t.Errorf("without -A the machine reached an agent: %+v", r)
		}
	})
}

// What Ansible runs: its temporary folder under ~USER, created by the
// shell, and files copied there with scp (both modes) before they run.
func TestTildeUser(t *testing.T) {
	requireNSSWrapper(t)
	forKinds(t, func(t *testing.T, f *fixture) {
		tilde := "~" + f.kind.user
		r := f.ssh(t, f.user, f.kind.user, nil, fmt.Sprintf(`/bin/sh -c 'echo %s && mkdir -p %s/.ansible/tmp && id -un'`, tilde, tilde))
		if want := f.home() + "\n" + f.kind.user + "\n"; r.code != 0 || r.stdout != want {
			t.Fatalf("~user: %+v, want %q", r, want)
		}
		local := filepath.Join(t.TempDir(), "module.py")
		if err := os.WriteFile(local, []byte("print('hi')\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"-s", "-O"} {
			remote := tilde + "/.ansible/tmp/module" + mode + ".py"
			args := append(f.sshArgs(f.user), "-P", f.port, mode, local, f.kind.user+"@"+f.host+":"+remote)
			if r := run(t, nil, "scp", args...); r.code != 0 {
				t.Errorf("scp %s to %s: %+v", mode, remote, r)
			}
			if _, err := os.Stat(filepath.Join(f.home(), ".ansible", "tmp", "module"+mode+".py")); err != nil {
				t.Errorf("scp %s to %s: %v", mode, remote, err)
			}
		}
		if _, err := os.Stat(filepath.Join(f.home(), tilde)); err == nil {
			t.Errorf("a literal %s folder was created in the home folder", tilde)
		}
	})
}

func requireNSSWrapper(t *testing.T) {
	t.Helper()
	if NSSWrapper() != "" {
		return
	}
	t.Skip("libnss_wrapper.so not installed (Debian: libnss-wrapper); ~user does not expand on local machines without it")
}

// Relative paths of sftp and scp land in the machine's home folder.
func TestRelativePaths(t *testing.T) {
	requireNSSWrapper(t)
	forKinds(t, func(t *testing.T, f *fixture) {
		if r := f.ssh(t, f.user, f.kind.user, nil, "pwd"); r.stdout != f.home()+"\n" {
			t.Errorf("pwd: %+v, want %s", r, f.home())
		}
		local := t.TempDir()
		up := filepath.Join(local, "up")
		if err := os.WriteFile(up, []byte("relative\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		batch := strings.NewReader("put " + up + " via-sftp\n")
		if r := run(t, batch, "sftp", append(f.sshArgs(f.user), "-P", f.port, "-b", "-", f.kind.user+"@"+f.host)...); r.code != 0 {
			t.Fatalf("sftp: %+v", r)
		}
		for _, mode := range []string{"-s", "-O"} {
			if r := run(t, nil, "scp", append(f.sshArgs(f.user), "-P", f.port, mode, up, f.kind.user+"@"+f.host+":via-scp"+mode)...); r.code != 0 {
				t.Fatalf("scp %s: %+v", mode, r)
			}
		}
		for _, name := range []string{"via-sftp", "via-scp-s", "via-scp-O"} {
			if got, err := os.ReadFile(filepath.Join(f.home(), name)); err != nil || string(got) != "relative\n" {
				t.Errorf("%s: %q, %v; want it in the home folder", name, got, err)
			}
		}
	})
}

// A command longer than the system takes fails as under sshd: the
// request succeeds, the shell's error is on stderr, exit status 1.
func TestCommandTooLong(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		// ssh joins its arguments into one command: 150 kB, over the
		// 128 kB the kernel allows one argument (sh -c COMMAND).
		words := append([]string{":"}, slices.Repeat([]string{"xxxxxxxxx"}, 15_000)...)
		args := append(append(f.sshArgs(f.user), "-p", f.port, f.kind.user+"@"+f.host), append(words, "; echo ran")...)
		r := run(t, nil, "ssh", args...)
		if want := loginShell() + ": Argument list too long\n"; r.code != 1 || r.stdout != "" || r.stderr != want {
			t.Errorf("a 150 kB command: %+v; want exit 1 and %q on stderr", r, want)
		}
	})
}
