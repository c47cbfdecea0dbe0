package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/proctree"
)

const (
	// checkTimeout bounds sshd's check of its configuration at start.
	checkTimeout = 10 * time.Second
	// stopTimeout bounds each wait for sshd to exit after a signal.
	stopTimeout = 5 * time.Second
	// stderrTail is how many of sshd's last log lines an error quotes.
	stderrTail = 20
	// freezeRounds bounds the passes that stop sshd's descendants.
	freezeRounds = 10
)

// The name of the file an OpenSSH machine keeps its sshd's configuration
// in; its host key and authorized keys are in RootDir, where boot writes
// them.
const sshdConfigFile = "sshd_config"

// openSSH runs a real sshd for each connection, in inetd mode (sshd -i, as
// systemd's socket-activated sshd@.service does), so that the machine
// sees each connection come and mounts the home volume the record names
// before sshd serves it (see homes): a daemon would serve connections
// without the machine knowing.
type openSSH struct {
	addr   string
	dir    string
	sshd   string
	env    []string // sshd's own environment: the user database
	homes  *homes
	log    *slog.Logger
	stderr *logWriter
	ln     net.Listener
	tmux   *tmuxServer
	wg     sync.WaitGroup // the accept loop and each connection's sshd

	// mu guards closed and procs. Lock order: after nothing, before
	// nothing.
	mu     sync.Mutex
	closed bool
	procs  map[*exec.Cmd]chan struct{} // each connection's sshd; closed once reaped

	closeOnce sync.Once
	closeErr  error
}

// StartOpenSSH starts a machine whose connections a real OpenSSH sshd
// serves, listening on cfg.Addr. The document's user must be the OS user
// running this process (see OpenSSHUser).
func StartOpenSSH(cfg Config) (Machine, error) {
	m, err := startOpenSSH(cfg)
	if err != nil {
		return nil, fmt.Errorf("start openssh machine: %w", err)
	}
	return m, nil
}

func startOpenSSH(cfg Config) (*openSSH, error) {
	dir, err := prepare(&cfg)
	if err != nil {
		return nil, err
	}
	osUser, err := OpenSSHUser()
	if err != nil {
		return nil, err
	}
	if cfg.Doc.User != osUser {
		return nil, fmt.Errorf("the document's user %q is not %q, the OS user running the gateway; sshd only logs in real users, so set the instance user to %q", cfg.Doc.User, osUser, osUser)
	}
	sshd, err := findSSHD()
	if err != nil {
		return nil, err
	}
	log := logger(cfg).With("machine", cfg.Doc.InstanceID, "kind", "openssh")
	if os.Geteuid() == 0 {
		// sshd running as root insists on its privilege separation
		// directory; Debian keeps it on a tmpfs that boots empty.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("create sshd's privilege separation directory: %w", err)
		}
	}
	tmux, err := newTmuxServer()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, HomeDir)
	// sshd starts sessions in the home folder the user database names.
	nssEnv, err := userDatabase(dir, osUser, home, log)
	if err != nil {
		tmux.stop(log)
		return nil, err
	}
	m := &openSSH{
		addr:   cfg.Addr,
		dir:    dir,
		sshd:   sshd,
		env:    nssEnv,
		log:    log,
		stderr: &logWriter{log: log},
		tmux:   tmux,
		procs:  map[*exec.Cmd]chan struct{}{},
	}
	conf, err := sshdConfig(dir, home, osUser, append(slices.Clone(nssEnv), tmuxEnv+"="+tmux.dir))
	if err == nil {
		err = writeFile(filepath.Join(dir, sshdConfigFile), []byte(conf))
	}
	if err == nil {
		m.homes, err = newHomes(dir, log)
	}
	if err == nil {
		err = checkSSHD(sshd, filepath.Join(dir, sshdConfigFile), dir, m.env)
	}
	if err == nil {
		m.ln, err = net.Listen("tcp", cfg.Addr)
	}
	if err != nil {
		tmux.stop(log)
		return nil, err
	}
	m.wg.Add(1)
	go m.accept()
	log.Debug("machine listening", "addr", cfg.Addr)
	return m, nil
}

// checkSSHD has sshd check its configuration and keys (sshd -t), so that
// a machine that could serve no connection fails to start, in sshd's own
// words.
func checkSSHD(sshd, conf, dir string, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshd, "-t", "-f", conf)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sshd refuses its configuration (%v): %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (m *openSSH) accept() {
	defer m.wg.Done()
	acceptLoop(m.ln, m.log, func(c net.Conn) bool {
		if err := m.serve(c); err != nil {
			m.log.Warn("cannot serve a connection", "remote", c.RemoteAddr().String(), "err", err)
		}
		return true
	})
}

// serve hands the connection to an sshd of its own, once the home volume
// the record names is mounted.
func (m *openSSH) serve(c net.Conn) error {
	defer c.Close()
	if err := m.homes.resolve(); err != nil {
		return err
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		return fmt.Errorf("hand over the connection: %w", err)
	}
	defer f.Close()
	cmd := &exec.Cmd{
		Path:   m.sshd,
		Args:   []string{m.sshd, "-i", "-e", "-f", filepath.Join(m.dir, sshdConfigFile)},
		Dir:    m.dir,
		Env:    append(os.Environ(), m.env...),
		Stdin:  f,
		Stdout: f,
		Stderr: m.stderr,
		// Bounds Wait should a session child keep sshd's stderr open.
		WaitDelay: stopTimeout,
		SysProcAttr: &syscall.SysProcAttr{
			// A terminal's ^C meant for the gateway is not for sshd.
			Setpgid: true,
			// If the gateway dies, its machines go with it.
			Pdeathsig: syscall.SIGTERM,
		},
	}
	// Started under the lock, so that Close, which takes it first, either
	// finds the process among procs or keeps it from starting.
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", m.sshd, err)
	}
	done := make(chan struct{})
	m.procs[cmd] = done
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		cmd.Wait()
		m.mu.Lock()
		delete(m.procs, cmd)
		m.mu.Unlock()
		close(done)
	}()
	return nil
}

// Close stops listening and ends every connection's sshd and every
// process it started: the sessions of a machine that powers off do not
// live on. It keeps the folder.
func (m *openSSH) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		procs := maps.Clone(m.procs)
		m.mu.Unlock()
		err := m.ln.Close()
		for cmd, done := range procs {
			err = errors.Join(err, m.stop(cmd, done))
		}
		m.wg.Wait()
		if err != nil {
			m.closeErr = fmt.Errorf("close openssh machine %s: %w", m.addr, err)
		}
		m.tmux.stop(m.log)
		m.log.Debug("machine closed")
	})
	return m.closeErr
}

// stop ends one connection's sshd and its descendants.
func (m *openSSH) stop(cmd *exec.Cmd, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	default:
	}
	pid := cmd.Process.Pid
	// sshd forks for privilege separation and its sessions start their
	// own, so its process group does not hold them. Freeze sshd and its
	// descendants (so none forks away meanwhile), kill the descendants,
	// then let sshd itself end.
	cmd.Process.Signal(syscall.SIGSTOP)
	descendants := freezeDescendants(pid)
	for _, d := range descendants {
		syscall.Kill(d, syscall.SIGKILL)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Process.Signal(syscall.SIGCONT)
	if waitClosed(done, stopTimeout) {
		return nil
	}
	m.log.Warn("sshd ignored SIGTERM; killing it", "pid", pid)
	cmd.Process.Kill()
	if waitClosed(done, stopTimeout) {
		return nil
	}
	return fmt.Errorf("sshd (pid %d) did not exit within %s of SIGKILL", pid, stopTimeout)
}

func waitClosed(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// freezeDescendants stops every descendant of pid and returns them. It scans
// again after each pass, since a process may have forked before it stopped.
func freezeDescendants(pid int) []int {
	frozen := map[int]bool{}
	var order []int
	for range freezeRounds {
		found := false
		ds, _ := proctree.Descendants(pid) // without /proc, nothing is found
		for _, d := range ds {
			if !frozen[d] {
				frozen[d] = true
				order = append(order, d)
				syscall.Kill(d, syscall.SIGSTOP)
				found = true
			}
		}
		if !found {
			break
		}
	}
	return order
}

// findSSHD finds sshd by absolute path, which sshd requires for re-exec.
func findSSHD() (string, error) {
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return "/usr/sbin/sshd", nil
	}
	p, err := exec.LookPath("sshd")
	if err != nil {
		return "", errors.New("sshd not found in /usr/sbin or on PATH; install OpenSSH's server (Debian: openssh-server)")
	}
	return filepath.Abs(p)
}

// sshdConfig renders the machine's sshd_config.
func sshdConfig(dir, home, user string, env []string) (string, error) {
	q := func(s string) (string, error) {
		if strings.ContainsAny(s, "\"\\\r\n") {
			return "", fmt.Errorf("path %q holds a character sshd_config cannot quote", s)
		}
		return `"` + s + `"`, nil
	}
	var errs []error
	path := func(name string) string {
		v, err := q(filepath.Join(dir, name))
		errs = append(errs, err)
		return v
	}
	// AuthorizedKeysFile expands %-tokens, so a literal % is doubled.
	authorized := strings.ReplaceAll(path(filepath.Join(RootDir, authorizedKeysDir, user)), "%", "%%")
	quotedHome, err := q(home)
	errs = append(errs, err)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by cc-gateway for a local machine; rewritten on every start.\n")
	fmt.Fprintf(&b, "HostKey %s\n", path(filepath.Join(RootDir, hostKeyPath)))
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", authorized)
	fmt.Fprintf(&b, "RevokedKeys %s\n", path(RevokedKeys))
	fmt.Fprintf(&b, "AllowUsers %s\n", user)
	// PermitUserEnvironment: sessions get the person's secrets, which the
	// gateway writes to bootstrap.SecretsFile, as on the NixOS image.
	b.WriteString(`UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
PermitUserEnvironment yes
PrintMotd no
PrintLastLog no
UseDNS no
Subsystem sftp internal-sftp
AcceptEnv LANG LANGUAGE LC_* COLORTERM NO_COLOR TZ
LogLevel INFO
`)
	// SetEnv overrides the HOME sshd derives from the password database
	// (the same folder when nss_wrapper gives sshd the machine's one), tells
	// the gateway's expiry update where this machine keeps its expires file,
	// puts the revoke command first on PATH, and gives sessions the
	// machine's user database and tmux server too. sshd reads only the
	// first SetEnv line.
	sessPath, err := q(sessionPath(dir))
	errs = append(errs, err)
	fmt.Fprintf(&b, "SetEnv HOME=%s CLOUD_INSTANCE_DIR=%s PATH=%s", quotedHome, path(""), sessPath)
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		v, err := q(value)
		errs = append(errs, err)
		fmt.Fprintf(&b, " %s=%s", name, v)
	}
	b.WriteString("\n")
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return b.String(), nil
}

// logWriter passes sshd's log lines to the logger and keeps the last few
// for error messages.
type logWriter struct {
	log     *slog.Logger
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.partial[:i]), "\r")
		w.partial = w.partial[i+1:]
		w.log.Debug("sshd", "line", line)
		w.lines = append(w.lines, line)
		if len(w.lines) > stderrTail {
			w.lines = w.lines[1:]
		}
	}
	// A runaway line without newline must not grow without bound.
	if len(w.partial) > 4096 {
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *logWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := append([]string(nil), w.lines...)
	if len(w.partial) > 0 {
		lines = append(lines, string(w.partial))
	}
	if len(lines) == 0 {
		return "sshd wrote nothing"
	}
	return strings.Join(lines, "; ")
}
