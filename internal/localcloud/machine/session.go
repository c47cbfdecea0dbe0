package machine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

const (
	// outputGrace is how long the session waits for the end of the output
	// after the process exited: a background job that inherited stdout
	// must not hold the session open forever.
	outputGrace = 2 * time.Second
	// hangupGrace is how long a process has to exit after SIGHUP before it
	// is killed.
	hangupGrace = 2 * time.Second
	// maxEnv bounds the variables one session may set.
	maxEnv = 64
)

// sftpServers are where distributions put OpenSSH's sftp-server.
var sftpServers = []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"}

// session is one session channel: at most one process, optionally on a PTY.
// Only the request loop's goroutine changes its fields, except where noted.
type session struct {
	m    *builtin
	conn *ssh.ServerConn
	ch   ssh.Channel
	log  *slog.Logger

	env   map[string]string // accepted client variables
	term  string            // from pty-req
	ptmx  *os.File          // PTY master, pollable; nil without a PTY
	tty   *os.File          // PTY slave until the process owns it
	agent *agentSocket      // from auth-agent-req@openssh.com; nil without
	ran   bool              // a program was asked for: the setup is over

	mu     sync.Mutex
	cmd    *exec.Cmd     // set once started
	exited bool          // guarded by mu: the process has been reaped
	done   chan struct{} // closed once the exit has been reported
}

func (m *builtin) serveSession(conn *ssh.ServerConn, nc ssh.NewChannel, log *slog.Logger) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	s := &session{m: m, conn: conn, ch: ch, log: log, env: make(map[string]string)}
	for req := range reqs {
		ok, then := s.handle(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		// The process's output and exit only flow after the reply, so a
		// fast command cannot close the channel before the client heard
		// that it started.
		if then != nil {
			then()
		}
	}
	s.end()
}

// handle serves one channel request. It returns whether it succeeded and
// what to run after the reply has gone out.
func (s *session) handle(req *ssh.Request) (bool, func()) {
	switch req.Type {
	case "pty-req":
		return s.ptyReq(req.Payload), nil
	case "window-change":
		var p struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(req.Payload, &p) != nil || s.ptmx == nil {
			return false, nil
		}
		return setSize(s.ptmx, p.Cols, p.Rows, p.Width, p.Height) == nil, nil
	case "env":
		var p struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &p) != nil || !acceptEnv(p.Name, p.Value) || s.ran {
			return false, nil
		}
		if _, ok := s.env[p.Name]; !ok && len(s.env) >= maxEnv {
			return false, nil
		}
		s.env[p.Name] = p.Value
		return true, nil
	case "shell":
		return s.start("shell", "")
	case "exec":
		var p struct{ Command string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return false, nil
		}
		return s.start("exec", p.Command)
	case "subsystem":
		var p struct{ Name string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return false, nil
		}
		return s.start("subsystem", p.Name)
	case "auth-agent-req@openssh.com":
		return s.agentReq(), nil
	case "signal":
		var p struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return false, nil
		}
		return s.signal(p.Signal), nil
	default:
		// x11-req, break, …: not served.
		return false, nil
	}
}

// agentReq makes the session's agent socket, once, before its program starts.
func (s *session) agentReq() bool {
	if s.agent != nil || s.ran {
		return false
	}
	a, err := s.listenAgent()
	if err != nil {
		s.log.Warn("cannot forward the agent", "err", err)
		return false
	}
	s.agent = a
	return true
}

// ptyReq opens a PTY with the requested size and terminal modes.
func (s *session) ptyReq(payload []byte) bool {
	var p struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}
	if err := ssh.Unmarshal(payload, &p); err != nil || s.ptmx != nil || s.ran {
		return false
	}
	ptmx, tty, err := openPTY()
	if err != nil {
		s.log.Warn("cannot open a pty", "err", err)
		return false
	}
	if err := setSize(ptmx, p.Cols, p.Rows, p.Width, p.Height); err != nil {
		s.log.Debug("cannot size the pty", "err", err)
	}
	if err := applyModes(tty, []byte(p.Modes)); err != nil {
		s.log.Debug("cannot apply terminal modes", "err", err)
	}
	s.ptmx, s.tty, s.term = ptmx, tty, p.Term
	return true
}

// openPTY opens a PTY whose master goes through Go's poller, so Close
// interrupts a pending Read. creack/pty leaves the master in blocking mode,
// hence the non-blocking duplicate.
func openPTY() (ptmx, tty *os.File, err error) {
	p, t, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	defer p.Close()
	fd, err := unix.FcntlInt(p.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("duplicate pty master: %w", err)
	}
	return os.NewFile(uintptr(fd), p.Name()), t, nil
}

func setSize(ptmx *os.File, cols, rows, width, height uint32) error {
	ws := unix.Winsize{Col: clamp16(cols), Row: clamp16(rows), Xpixel: clamp16(width), Ypixel: clamp16(height)}
	rc, err := ptmx.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &ws) }); err != nil {
		return err
	}
	return ioErr
}

func clamp16(v uint32) uint16 {
	return uint16(min(v, 0xffff))
}

// acceptEnv is the AcceptEnv of the machine: locale, terminal and time zone
// variables, well formed, and nothing that could change how commands run.
func acceptEnv(name, value string) bool {
	if name == "" || len(name) > 64 || len(value) > 4096 || strings.ContainsRune(value, 0) {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	switch name {
	case "LANG", "LANGUAGE", "TERM", "COLORTERM", "NO_COLOR", "TZ":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// start runs the session's process: a login shell, a command through the
// shell, or the sftp subsystem.
func (s *session) start(kind, arg string) (bool, func()) {
	if s.ran {
		return false, nil
	}
	cmd, err := s.command(kind, arg)
	if err != nil {
		s.log.Debug("refused session request", "kind", kind, "err", err)
		return false, nil
	}
	s.ran = true
	var then func()
	if s.ptmx != nil {
		then, err = s.startPTY(cmd)
	} else {
		then, err = s.startPipes(cmd)
	}
	var execErr *os.PathError
	if errors.As(err, &execErr) && execErr.Op == "fork/exec" {
		// sshd forks, then execs the shell: the request has succeeded
		// by then, and the child reports the failure (a command longer
		// than the system allows: E2BIG) and exits 1.
		s.log.Debug("session process failed to start", "kind", kind, "err", err)
		return true, func() { s.execFailed(cmd.Path, execErr.Err) }
	}
	if err != nil {
		s.log.Warn("cannot start session process", "kind", kind, "err", err)
		return false, nil
	}
	s.log.Debug("session started", "kind", kind, "pty", s.ptmx != nil, "pid", cmd.Process.Pid)
	return true, then
}

func (s *session) command(kind, arg string) (*exec.Cmd, error) {
	shell := loginShell()
	var cmd *exec.Cmd
	switch kind {
	case "shell":
		// A leading dash in argv[0] is how login(1) and sshd ask for a
		// login shell.
		cmd = &exec.Cmd{Path: shell, Args: []string{"-" + filepath.Base(shell)}}
	case "exec":
		cmd = &exec.Cmd{Path: shell, Args: []string{filepath.Base(shell), "-c", arg}}
	case "subsystem":
		if arg != "sftp" {
			return nil, fmt.Errorf("unknown subsystem %q", arg)
		}
		i := slices.IndexFunc(sftpServers, func(p string) bool { _, err := os.Stat(p); return err == nil })
		if i < 0 {
			return nil, errors.New("no sftp-server installed")
		}
		cmd = &exec.Cmd{Path: sftpServers[i], Args: []string{sftpServers[i]}}
	}
	cmd.Dir = s.m.home
	cmd.Env = s.environ(shell)
	// Its own session and process group, as under sshd, so a hangup
	// reaches the process's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, nil
}

func (s *session) environ(shell string) []string {
	vars := map[string]string{
		"HOME":    s.m.home,
		"USER":    s.m.user,
		"LOGNAME": s.m.user,
		"SHELL":   shell,
		"PATH":    sessionPath(s.m.dir),
		// Where the gateway's expiry update finds the expires file.
		"CLOUD_INSTANCE_DIR": s.m.dir,
		// Where tmux keeps this machine's persistent sessions.
		tmuxEnv: s.m.tmux.dir,
	}
	// The person's secrets, as sshd gives them with PermitUserEnvironment;
	// the machine's own variables win.
	for k, v := range userEnvironment(s.m.home, s.log) {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	if client, server, ok := hostPorts(s.conn.RemoteAddr(), s.conn.LocalAddr()); ok {
		vars["SSH_CONNECTION"] = client[0] + " " + client[1] + " " + server[0] + " " + server[1]
		vars["SSH_CLIENT"] = client[0] + " " + client[1] + " " + server[1]
	}
	if s.agent != nil {
		vars["SSH_AUTH_SOCK"] = s.agent.path
	}
	if s.ptmx != nil {
		if s.term != "" {
			vars["TERM"] = s.term
		}
		vars["SSH_TTY"] = s.tty.Name()
	}
	for k, v := range s.env {
		vars[k] = v
	}
	env := make([]string, 0, len(vars)+len(s.m.nssEnv))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	env = append(env, s.m.nssEnv...)
	slices.Sort(env)
	return env
}

func hostPorts(client, server net.Addr) ([2]string, [2]string, bool) {
	ch, cp, err1 := net.SplitHostPort(client.String())
	sh, sp, err2 := net.SplitHostPort(server.String())
	return [2]string{ch, cp}, [2]string{sh, sp}, err1 == nil && err2 == nil
}

// startPTY starts cmd on the session's PTY. With a PTY, stdout and stderr
// are one stream, as on any terminal.
func (s *session) startPTY(cmd *exec.Cmd) (func(), error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.tty, s.tty, s.tty
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0 // the child's stdin
	if err := s.setCmd(cmd); err != nil {
		return nil, err
	}
	// The child holds the slave now; once it and its children are gone,
	// reading the master fails, which marks the end of the output.
	s.tty.Close()
	s.tty = nil

	return func() {
		out := newOutputCopy(s.ptmx)
		s.m.wg.Add(3)
		go func() {
			defer s.m.wg.Done()
			out.run(s.ch)
		}()
		go func() {
			// A terminal cannot be half-closed, so the client's EOF
			// changes nothing for the process, as under sshd.
			defer s.m.wg.Done()
			io.Copy(s.ptmx, s.ch)
		}()
		go func() {
			defer s.m.wg.Done()
			s.wait([]*outputCopy{out}, s.ptmx)
		}()
	}, nil
}

// startPipes starts cmd with stdin, stdout and stderr on separate pipes.
func (s *session) startPipes(cmd *exec.Cmd) (func(), error) {
	var files []*os.File
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w, err
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	err := errors.Join(err1, err2, err3)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err == nil {
		err = s.setCmd(cmd)
	}
	if err != nil {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		return nil, err
	}
	// The child has its own copies of these.
	inR.Close()
	outW.Close()
	errW.Close()

	return func() {
		outputs := []*outputCopy{newOutputCopy(outR), newOutputCopy(errR)}
		s.m.wg.Add(4)
		go func() {
			defer s.m.wg.Done()
			outputs[0].run(s.ch)
		}()
		go func() {
			defer s.m.wg.Done()
			outputs[1].run(s.ch.Stderr())
		}()
		go func() {
			// The client's EOF is the process's EOF.
			defer s.m.wg.Done()
			io.Copy(inW, s.ch)
			inW.Close()
		}()
		go func() {
			defer s.m.wg.Done()
			s.wait(outputs, outR, errR, inW)
		}()
	}, nil
}

// execFailed ends a session whose program could not be executed the way
// sshd's child does: perror(shell), then exit status 1.
func (s *session) execFailed(path string, err error) {
	msg := err.Error()
	if msg != "" {
		// Go's error texts are libc's with a lower-case first letter.
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	if s.ptmx != nil {
		// On a terminal the child's stderr is the terminal, and the
		// terminal turns its newline into CR LF.
		io.WriteString(s.ch, path+": "+msg+"\r\n")
	} else {
		io.WriteString(s.ch.Stderr(), path+": "+msg+"\n")
	}
	s.ch.CloseWrite()
	s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
	s.ch.Close()
}

// setCmd starts cmd and records it as the session's process.
func (s *session) setCmd(cmd *exec.Cmd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	return nil
}

// wait reaps the process, lets its output drain, closes files, and reports
// the exit the way sshd does: EOF, exit-status or exit-signal, close.
func (s *session) wait(outputs []*outputCopy, files ...*os.File) {
	defer close(s.done)
	s.cmd.Wait()
	s.mu.Lock()
	s.exited = true
	s.mu.Unlock()

	// A background job that inherited the output may keep it open: after
	// a grace period, take what is buffered and stop waiting for more.
	timer := time.NewTimer(outputGrace)
	defer timer.Stop()
	for _, o := range outputs {
		select {
		case <-o.done:
		case <-timer.C:
			s.log.Debug("output still open after exit; draining it")
			for _, o := range outputs {
				o.stop()
			}
		}
		<-o.done
	}
	// Closing also ends a copy that still feeds the process's input.
	for _, f := range files {
		f.Close()
	}

	s.ch.CloseWrite()
	state := s.cmd.ProcessState
	if state == nil {
		// Never reaped (wait itself failed): report a failure, not success.
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
		s.ch.Close()
		return
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: signalName(ws.Signal()), CoreDumped: ws.CoreDump()}))
		s.log.Debug("session ended", "signal", signalName(ws.Signal()))
	} else {
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ws.ExitStatus())}))
		s.log.Debug("session ended", "status", ws.ExitStatus())
	}
	s.ch.Close()
}

// maxDrain bounds what is still read from an output after its process
// exited, should a background job keep writing.
const maxDrain = 1 << 20

// outputCopy copies a process's output to the channel until EOF, or, once
// stopped, until the output holds nothing more right now. Unlike closing the
// file, stopping never drops what the process wrote before it exited.
type outputCopy struct {
	f        *os.File // pollable, so a deadline interrupts a pending Read
	stopping atomic.Bool
	done     chan struct{}
}

func newOutputCopy(f *os.File) *outputCopy {
	return &outputCopy{f: f, done: make(chan struct{})}
}

func (c *outputCopy) run(w io.Writer) {
	defer close(c.done)
	buf := make([]byte, 32*1024)
	for {
		n, err := c.f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == nil {
			continue
		}
		// EOF, or EIO from a PTY master whose terminal is gone: done.
		if errors.Is(err, os.ErrDeadlineExceeded) && c.stopping.Load() {
			c.drain(w, buf)
		}
		return
	}
}

// stop makes run finish once it has read what is buffered.
func (c *outputCopy) stop() {
	c.stopping.Store(true)
	c.f.SetReadDeadline(time.Now())
}

// drain reads without waiting until the output is empty.
func (c *outputCopy) drain(w io.Writer, buf []byte) {
	c.f.SetReadDeadline(time.Time{})
	rc, err := c.f.SyscallConn()
	if err != nil {
		return
	}
	for total := 0; total < maxDrain; {
		var n int
		var rerr error
		// Returning true reads once and never parks for more data.
		if err := rc.Read(func(fd uintptr) bool { n, rerr = unix.Read(int(fd), buf); return true }); err != nil {
			return
		}
		if rerr != nil || n <= 0 {
			return
		}
		total += n
		if _, err := w.Write(buf[:n]); err != nil {
			return
		}
	}
}

// signal delivers a client's signal request to the process.
func (s *session) signal(name string) bool {
	sig := unix.SignalNum("SIG" + name)
	if sig == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.exited {
		return false
	}
	return s.cmd.Process.Signal(sig) == nil
}

// signalGroup signals the process's group, unless the process has been
// reaped already (its id could then name someone else's group).
func (s *session) signalGroup(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && !s.exited {
		syscall.Kill(-s.cmd.Process.Pid, sig)
	}
}

// end runs once the channel is gone (closed by the client, or the
// connection dropped): it hangs up the process, as closing a terminal would,
// and kills it if it does not go.
func (s *session) end() {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		default:
			s.signalGroup(syscall.SIGHUP)
			timer := time.NewTimer(hangupGrace)
			select {
			case <-done:
				timer.Stop()
			case <-timer.C:
				s.signalGroup(syscall.SIGKILL)
				<-done
			}
		}
	}
	if s.ptmx != nil {
		s.ptmx.Close()
	}
	if s.tty != nil {
		s.tty.Close()
	}
	if s.agent != nil {
		s.agent.close()
	}
	s.ch.Close()
}

// signalName names a signal as RFC 4254 does: without "SIG".
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return strings.TrimPrefix(name, "SIG")
	}
	return strconv.Itoa(int(sig))
}

// loginShell is the OS user's login shell from the password database, or
// bash, or sh.
var loginShell = sync.OnceValue(func() string {
	candidates := []string{"/bin/bash", "/bin/sh"}
	if shell := passwdShell(os.Getuid()); shell != "" {
		candidates = append([]string{shell}, candidates...)
	}
	for _, c := range candidates {
		switch filepath.Base(c) {
		case "nologin", "false":
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	return "/bin/sh"
})

// defaultPath is the usual system PATH followed by the gateway's own
// entries, so tools installed on the host are found on the local machine.
var defaultPath = sync.OnceValue(func() string {
	dirs := []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if filepath.IsAbs(d) && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, ":")
})
