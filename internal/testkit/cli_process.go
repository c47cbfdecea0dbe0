package testkit

import (
	"os"
	"os/exec"
	"time"
)

// Process is a program a test runs beside it, such as a server or a client
// left connected. Its exit is collected as it happens, so the test can wait
// for it with a bound, or stop it.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, once done is closed
}

// StartProcess starts cmd. It takes no test: a process may outlive the
// test that started it (one server for several benchmarks), so stopping it
// is the caller's.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err waits for the process to exit and returns how it ended, as
// exec.Cmd.Wait does.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop sends sig and waits up to grace for the process to exit, then kills
// it. It reports whether the process ended without being killed, as it does
// when it had exited already.
func (p *Process) Stop(sig os.Signal, grace time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	p.Cmd.Process.Signal(sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		p.Cmd.Process.Kill()
		<-p.done
		return false
	}
}
