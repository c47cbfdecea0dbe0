package machine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// tmuxStopTimeout bounds the kill-server that ends a machine's tmux.
const tmuxStopTimeout = 5 * time.Second

// tmuxServer is where a machine's persistent terminal sessions live: the
// host's tmux, with its socket in a folder of the machine's own (named to
// sessions by TMUX_TMPDIR). Every local machine runs as the same OS user, so
// without it they would share one tmux server and see each other's
// sessions. The folder is short, outside the machine's folder, because a
// socket's path is limited to about 100 bytes.
type tmuxServer struct {
	dir string
}

func newTmuxServer() (*tmuxServer, error) {
	dir, err := os.MkdirTemp("", "cc-tmux-")
	if err != nil {
		return nil, fmt.Errorf("create the tmux socket folder: %w", err)
	}
	return &tmuxServer{dir: dir}, nil
}

// tmuxEnv is the variable that puts a session's tmux on a machine's server.
const tmuxEnv = "TMUX_TMPDIR"

// stop ends the server and the programs in its sessions, as powering a
// machine off does, and removes its folder. tmux runs as a daemon, outside
// the process tree the machine ends on Close.
func (s *tmuxServer) stop(log *slog.Logger) {
	if _, err := exec.LookPath("tmux"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), tmuxStopTimeout)
		defer cancel()
		// The socket named outright: tmux would otherwise follow a TMUX
		// variable to the server the gateway itself may run in.
		socket := filepath.Join(s.dir, fmt.Sprintf("tmux-%d", os.Getuid()), "default")
		kill := exec.CommandContext(ctx, "tmux", "-S", socket, "kill-server")
		// No server (nobody used a session) is the usual case, not an error.
		if out, err := kill.CombinedOutput(); err != nil && ctx.Err() != nil {
			log.Warn("cannot stop the machine's tmux", "err", err, "output", string(out))
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		log.Warn("cannot remove the machine's tmux folder", "err", err)
	}
}
