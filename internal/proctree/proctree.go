// Package proctree finds the processes below a process, as Linux's /proc
// shows them.
//
// sshd forks a process per connection, and those start sessions of their
// own, so a process group does not hold everything an sshd started; walking
// the parent links in /proc does.
package proctree

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Descendants lists the processes below pid (children, their children, and
// so on), parents before their children. It reads one snapshot of /proc:
// a process that forks meanwhile may have children it does not list, so a
// caller that needs them all stops the tree first (SIGSTOP) and asks again.
// It fails only when /proc cannot be listed (not Linux); processes that end
// while it reads are left out.
func Descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(p); ok {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// parentOf reads a process's parent id from /proc/PID/stat, laid out as
// "pid (comm) state ppid …", where comm may itself hold spaces and
// parentheses.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}
