package machine

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// Bounds of the user's environment file a session reads: the gateway
// writes at most lease.MaxSecrets lines of lease.MaxSecretSize bytes.
const (
	maxUserEnvBytes = 4 << 20
	maxUserEnvLines = 1000
)

// userEnvironment reads the instance user's environment file
// (bootstrap.SecretsFile under home) as OpenSSH's sshd does with
// PermitUserEnvironment: NAME=value lines, leading blanks and lines
// starting with # skipped. A missing file is no variables; a bad line is
// skipped and logged without its contents.
func userEnvironment(home string, log *slog.Logger) map[string]string {
	f, err := os.Open(filepath.Join(home, bootstrap.SecretsFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("read the user's environment file", "err", err)
		}
		return nil
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(f, maxUserEnvBytes))
	sc.Buffer(nil, maxUserEnvBytes)
	for n := 1; sc.Scan() && n <= maxUserEnvLines; n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			log.Warn("bad line in the user's environment file", "line", n)
			continue
		}
		vars[name] = value
	}
	if err := sc.Err(); err != nil {
		log.Warn("read the user's environment file", "err", err)
	}
	return vars
}
