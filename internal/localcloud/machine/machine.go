// Package machine runs the local cloud's machines: SSH servers on loopback
// addresses that a bootstrap document personalises, standing in for the
// NixOS machines the gateway creates on Hetzner.
package machine

import (
	"errors"
	"log/slog"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// Config describes one machine.
type Config struct {
	Addr   string             // host:port to listen on, e.g. 127.1.0.5:2022
	Doc    bootstrap.Document // host key, authorized keys, user, instance id
	Dir    string             // the machine's own folder; HOME lives under it
	Logger *slog.Logger
}

// Machine is a running machine. Close stops it and keeps its folder.
type Machine interface {
	Close() error
}

// StartBuiltin starts an in-process SSH server.
func StartBuiltin(cfg Config) (Machine, error) { return nil, errors.New("not implemented") }

// StartOpenSSH starts a real OpenSSH sshd process.
func StartOpenSSH(cfg Config) (Machine, error) { return nil, errors.New("not implemented") }
