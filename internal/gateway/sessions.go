package gateway

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Persistent terminal sessions live on the person's machine, in tmux: the
// gateway only rewrites the request that starts a session's program into a
// command the machine runs, so the machine needs nothing but tmux, and the
// terminal, environment and resizes reach it as for any session.

// mainSession is the persistent session a plain interactive `ssh HOST`
// attaches to.
const mainSession = "main"

// sessionName is what a session's name may be: short, and safe both in a
// shell command line and for tmux, which gives '.' and ':' meanings.
var sessionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// The commands that reach the person's machine: the gateway turns them into
// the session's program there. help lists them after its own.
var (
	attachCommand = command{
		name:    "attach",
		usage:   "attach NAME",
		summary: "attach to your persistent terminal session NAME on your machine, creating it if missing (needs -t)",
		example: "-t attach build",
	}
	sessionsCommand = command{
		name:    "sessions",
		usage:   "sessions",
		summary: "list your persistent terminal sessions, their age and whether someone is attached",
		example: "sessions",
	}
	shellCommand = command{
		name:    "shell",
		usage:   "shell",
		summary: "a plain login shell on your machine, which ends with the connection (needs -t for a terminal)",
		example: "-t shell",
	}
	machineCommands = []command{attachCommand, sessionsCommand, shellCommand}
)

// offered reports whether help lists cmd: the commands of persistent
// sessions only when they are on.
func (g *Gateway) offered(cmd command) bool {
	return g.opts.PersistentSessions || cmd.name != attachCommand.name && cmd.name != sessionsCommand.name
}

// attachScript attaches to the tmux session name, creating it when missing,
// through the person's login shell so their PATH and profile apply. Without
// tmux it says so in one line and runs a plain login shell instead. name
// must match sessionName: it goes into the command line as it is.
func attachScript(name string) string {
	return `exec "${SHELL:-/bin/sh}" -lc 'if command -v tmux >/dev/null 2>&1; then exec tmux new-session -A -s ` + name + `; fi; ` +
		`echo "cc-gateway: tmux is not installed on your machine, so this is a plain shell that ends with the connection" >&2; exec "${SHELL:-/bin/sh}" -l'`
}

// sessionsScript lists the tmux sessions, one line each: name, age, and how
// many clients are attached. It runs in the shell sshd starts, not a login
// shell, whose profile may print (the NixOS image's prints the expiry).
const sessionsScript = `command -v tmux >/dev/null 2>&1 || { echo "tmux is not installed on your machine, so it keeps no persistent sessions"; exit 0; }
tmux list-sessions -F '#{session_name} #{session_created} #{session_attached}' 2>/dev/null | awk -v now="$(date +%s)" '
function age(s) {
	if (s >= 86400) return int(s / 86400) "d" int(s % 86400 / 3600) "h"
	if (s >= 3600) return int(s / 3600) "h" int(s % 3600 / 60) "m"
	if (s >= 60) return int(s / 60) "m"
	return s "s"
}
NR == 1 { printf "%-32s  %-7s  %s\n", "NAME", "AGE", "ATTACHED" }
{ printf "%-32s  %-7s  %s\n", $1, age(now - $2), ($3 > 0 ? "yes (" $3 ")" : "no") }
END { if (NR == 0) print "no persistent sessions on your machine" }'`

// sessionStart turns the start of a session that asks for a persistent
// session, a listing or a plain shell into the program the machine runs,
// rewriting start in place. It returns a refusal for the person instead
// when the request cannot be served, and done when the answer needs no
// machine (sessions while the machine is stopped). Other sessions pass
// unchanged.
func (g *Gateway) sessionStart(start *gossh.Request, terminal bool, fingerprint string) (answer string, refused, done bool) {
	if start.Type == "shell" {
		if terminal && g.opts.PersistentSessions {
			rewriteExec(start, attachScript(mainSession))
		}
		return "", false, false
	}
	if start.Type != "exec" {
		return "", false, false
	}
	args := strings.Fields(execCommand(start.Payload))
	if len(args) == 0 {
		return "", false, false
	}
	inv := g.opts.Invocation
	switch args[0] {
	case shellCommand.name:
		if len(args) > 1 {
			return fmt.Sprintf("shell: takes no arguments; to run a command on your machine, `%s COMMAND`", inv), true, false
		}
		start.Type, start.Payload = "shell", nil
	case attachCommand.name:
		if !g.opts.PersistentSessions {
			return fmt.Sprintf("attach: persistent sessions are off on this gateway; `%s` gives a plain shell", inv), true, false
		}
		if len(args) != 2 || !sessionName.MatchString(args[1]) {
			return fmt.Sprintf("attach: give one session name of 1 to 32 letters, digits, _ or -, like `%s -t attach build`", inv), true, false
		}
		if !terminal {
			return fmt.Sprintf("attach: needs a terminal: `%s -t attach %s`", inv, args[1]), true, false
		}
		rewriteExec(start, attachScript(args[1]))
	case sessionsCommand.name:
		if !g.opts.PersistentSessions {
			return fmt.Sprintf("sessions: persistent sessions are off on this gateway; `%s` gives a plain shell", inv), true, false
		}
		if len(args) > 1 {
			return "sessions: takes no arguments", true, false
		}
		// A stopped machine runs no sessions: say so rather than start
		// it, and bill it, just to list nothing.
		l, err := g.opts.Leases.Status(fingerprint)
		if errors.Is(err, lease.ErrNotFound) {
			return fmt.Sprintf("you have no machine, so no persistent sessions; `%s` creates one", inv), false, true
		}
		if err == nil && (l.State == lease.StateStopping || l.State == lease.StateStopped ||
			l.State == lease.StateHibernating || l.State == lease.StateHibernated) {
			return fmt.Sprintf("your machine %s is stopped, so no persistent sessions run; `%s` starts it", l.ServerName, inv), false, true
		}
		rewriteExec(start, sessionsScript)
	}
	return "", false, false
}

func rewriteExec(start *gossh.Request, command string) {
	start.Type, start.Payload = "exec", gossh.Marshal(struct{ Command string }{command})
}
