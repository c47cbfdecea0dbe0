package testkit

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestProcess(t *testing.T) {
	// A process that ends on the signal: stopped in time, and Err says how.
	p, err := StartProcess(exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Stop(syscall.SIGTERM, time.Minute) {
		t.Error("sleep outlived SIGTERM")
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Err after SIGTERM = %v", err)
	}
	if !p.Stop(syscall.SIGTERM, time.Minute) {
		t.Error("stopping an ended process again: reported as killed")
	}

	// A process that ignores the signal is killed after the grace period.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("sh", "-c", `trap "" TERM; echo ready; exec sleep 60`)
	cmd.Stdout = w
	p, err = StartProcess(cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Once it has said so, it ignores SIGTERM.
	if line, err := bufio.NewReader(r).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if p.Stop(syscall.SIGTERM, 100*time.Millisecond) {
		t.Error("a process that ignores SIGTERM: reported as ended by it")
	}
	select {
	case <-p.Done():
	default:
		t.Error("Stop returned before the killed process had exited")
	}
}
