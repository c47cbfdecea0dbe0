package proctree

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestDescendantsFindsTheWholeTree starts a real tree, a shell with a child
// and a grandchild, learns their pids from the shell itself (it prints $!
// after each fork, so they exist by then), and finds exactly them, parents
// before children. Killing what it lists ends the tree: the shell, waiting
// for its children, then exits.
func TestDescendantsFindsTheWholeTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", `
		sh -c 'sleep 60 & echo "grandchild $!"; wait' &
		echo "child $!"
		sleep 60 &
		echo "child $!"
		wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		// Whatever happened, leave nothing running: the tree shares the
		// shell's process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("the shell did not exit within 10s of SIGKILL")
		}
	})

	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(out)
		for len(got) < 3 && sc.Scan() {
			got = append(got, sc.Text())
		}
		lines <- got
		exited <- cmd.Wait()
	}()
	var printed []string
	select {
	case printed = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("the shell did not print its children's pids within 10s")
	}
	want := map[int]string{}
	for _, l := range printed {
		var kind string
		var pid int
		if _, err := fmt.Sscan(l, &kind, &pid); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		want[pid] = kind
	}
	if len(want) != 3 {
		t.Fatalf("the shell printed %q, want three pids", printed)
	}

	got, err := Descendants(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Descendants = %v, want the three pids %v", got, want)
	}
	for _, pid := range got {
		if _, ok := want[pid]; !ok {
			t.Fatalf("Descendants = %v lists %d, which the shell did not start (want %v)", got, pid, want)
		}
	}
	// Parents come before their children: the inner shell before the
	// grandchild.
	for pid, kind := range want {
		if kind != "grandchild" {
			continue
		}
		parent, ok := parentOf(pid)
		if !ok {
			t.Fatalf("no parent for grandchild %d", pid)
		}
		if slices.Index(got, parent) > slices.Index(got, pid) {
			t.Errorf("Descendants = %v lists grandchild %d before its parent %d", got, pid, parent)
		}
	}

	for _, pid := range got {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("the shell: %v, want a clean exit once its children were killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shell still waits for children 10s after they were killed")
	}
}

// TestDescendantsOfOddlyNamedLeaf: a process with no children has no
// descendants, and its parent is read right although its command name
// holds spaces, digits and parentheses (/proc/PID/stat shows it raw).
func TestDescendantsOfOddlyNamedLeaf(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	odd := filepath.Join(t.TempDir(), "a) 1 2 (b")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	got, err := Descendants(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("Descendants(%d) = %v, want none", cmd.Process.Pid, got)
	}
	if ppid, ok := parentOf(cmd.Process.Pid); !ok || ppid != os.Getpid() {
		t.Errorf("parentOf(%q) = %d, %v; want %d, true", odd, ppid, ok, os.Getpid())
	}
	mine, err := Descendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mine, cmd.Process.Pid) {
		t.Errorf("Descendants(self) = %v, want it to hold %d", mine, cmd.Process.Pid)
	}
}
