package machine

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
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
	"time"

	"github.com/cc-gateway/cc-gateway/internal/proctree"
)

const (
	// startTimeout bounds how long sshd may take to listen.
	startTimeout = 10 * time.Second
	// stopTimeout bounds each wait for sshd to exit after a signal.
	stopTimeout = 5 * time.Second
	// stderrTail is how many of sshd's last log lines an error quotes.
	stderrTail = 20
	// freezeRounds bounds the passes that stop sshd's descendants.
	freezeRounds = 10
)

// Names of the files an OpenSSH machine keeps in its folder; its host key
// and authorized keys are in RootDir, where boot writes them.
const (
	sshdConfigFile = "sshd_config"
	sshdPidFile    = "sshd.pid"
)

// openSSH is a real sshd process.
type openSSH struct {
	addr   string
	log    *slog.Logger
	cmd    *exec.Cmd
	stderr *logWriter
	done   chan struct{} // closed once sshd has been reaped
	tmux   *tmuxServer
	homes  *homes

	closeOnce sync.Once
	closeErr  error
}

// StartOpenSSH starts a real OpenSSH sshd process on cfg.Addr and returns
// once it listens. The document's user must be the OS user running this
// process (see OpenSSHUser).
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
	osUser, err := CheckOpenSSHUser(cfg.Doc.User)
	if err != nil {
		return nil, err
	}
	sshd, err := findSSHD()
	if err != nil {
		return nil, err
	}
	log := logger(cfg).With("machine", cfg.Doc.InstanceID, "kind", "openssh")
	// sshd starts sessions in the home folder the user database names.
	nssEnv, err := userDatabase(dir, osUser, filepath.Join(dir, HomeDir), log)
	if err != nil {
		return nil, err
	}
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
	// Mounted before sshd takes connections, as the image's home unit
	// runs before sshd.
	homes, err := startHomes(dir, cfg)
	if err != nil {
		tmux.stop(log)
		return nil, err
	}
	m, err := configureSSHD(cfg, dir, osUser, sshd, nssEnv, tmux, log)
	if err != nil {
		tmux.stop(log)
		homes.close()
		return nil, err
	}
	m.homes = homes
	return m, nil
}

// configureSSHD writes sshd's config and runs it, its sessions' tmux on tmux.
func configureSSHD(cfg Config, dir, osUser, sshd string, nssEnv []string, tmux *tmuxServer, log *slog.Logger) (*openSSH, error) {
	sessionEnv := append(slices.Clone(nssEnv), tmuxEnv+"="+tmux.dir)
	conf, err := sshdConfig(cfg.Addr, dir, filepath.Join(dir, HomeDir), osUser, sshdVersion(sshd), sessionEnv)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, sshdConfigFile), []byte(conf)); err != nil {
		return nil, err
	}
	// sshd would fail to bind a taken address, but a poll of the port
	// would find the other listener first and call sshd ready.
	probe, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	probe.Close()

	m, err := runSSHD(sshd, filepath.Join(dir, sshdConfigFile), dir, cfg.Addr, nssEnv, log)
	if err != nil {
		return nil, err
	}
	m.tmux = tmux
	return m, nil
}

// runSSHD starts sshd in the foreground on conf and waits until it listens
// on addr.
func runSSHD(sshd, conf, dir, addr string, env []string, log *slog.Logger) (*openSSH, error) {
	m := &openSSH{
		addr:   addr,
		log:    log,
		stderr: &logWriter{log: log},
		done:   make(chan struct{}),
	}
	m.cmd = &exec.Cmd{
		Path:   sshd,
		Args:   []string{sshd, "-D", "-e", "-f", conf},
		Dir:    dir,
		Env:    append(os.Environ(), env...),
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
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", sshd, err)
	}
	go func() {
		m.cmd.Wait()
		close(m.done)
	}()
	if err := m.waitListening(); err != nil {
		m.Close()
		return nil, err
	}
	log.Debug("machine listening", "addr", addr, "pid", m.cmd.Process.Pid)
	return m, nil
}

// waitListening polls the port until sshd accepts connections, failing with
// sshd's own words if it exits first.
func (m *openSSH) waitListening() error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return fmt.Errorf("sshd exited before listening (%s): %s", m.cmd.ProcessState, m.stderr.tail())
		case <-deadline.C:
			return fmt.Errorf("sshd did not listen on %s within %s: %s", m.addr, startTimeout, m.stderr.tail())
		case <-tick.C:
			c, err := net.DialTimeout("tcp", m.addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
		}
	}
}

// Remount mounts what the record names on HOME (see homes): sshd's
// sessions start there, on any connection.
func (m *openSSH) Remount() error { return m.homes.remount() }

// Close ends sshd and every process it started: the sessions of a machine
// that powers off do not live on. It keeps the folder.
func (m *openSSH) Close() error {
	m.closeOnce.Do(func() {
		if err := m.stop(); err != nil {
			m.closeErr = fmt.Errorf("close openssh machine %s: %w", m.addr, err)
		}
		if m.tmux != nil {
			m.tmux.stop(m.log)
		}
		if m.homes != nil {
			m.homes.close()
		}
		m.log.Debug("machine closed")
	})
	return m.closeErr
}

func (m *openSSH) stop() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	pid := m.cmd.Process.Pid
	// sshd forks a process per connection and those start their own
	// sessions, so its process group does not hold them. Freeze sshd and
	// its descendants (so none forks away meanwhile), kill the
	// descendants, then let sshd itself end.
	m.cmd.Process.Signal(syscall.SIGSTOP)
	descendants := freezeDescendants(pid)
	for _, d := range descendants {
		syscall.Kill(d, syscall.SIGKILL)
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	m.cmd.Process.Signal(syscall.SIGCONT)
	if waitClosed(m.done, stopTimeout) {
		return nil
	}
	m.log.Warn("sshd ignored SIGTERM; killing it", "pid", pid)
	m.cmd.Process.Kill()
	if waitClosed(m.done, stopTimeout) {
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

var versionPattern = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// sshdVersion returns sshd's version as major*100+minor, or 0 if unknown.
// sshd -V prints it; older ones print it in their usage message instead.
func sshdVersion(sshd string) int {
	out, _ := exec.Command(sshd, "-V").CombinedOutput()
	m := versionPattern.FindSubmatch(out)
	if m == nil {
		return 0
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major*100 + minor
}

// sshdConfig renders the machine's sshd_config.
func sshdConfig(addr, dir, home, user string, version int, env []string) (string, error) {
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
	fmt.Fprintf(&b, "ListenAddress %s\n", addr)
	fmt.Fprintf(&b, "HostKey %s\n", path(filepath.Join(RootDir, hostKeyPath)))
	fmt.Fprintf(&b, "PidFile %s\n", path(sshdPidFile))
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
	if version >= 908 {
		// Every local connection comes from loopback, often through the
		// gateway: penalising the source for a failed login would lock
		// everyone out.
		b.WriteString("PerSourcePenalties no\n")
	}
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
