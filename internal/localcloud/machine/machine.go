// Package machine runs the local cloud's machines: SSH servers on loopback
// addresses that a bootstrap document personalises, standing in for the
// NixOS machines the gateway creates on Hetzner.
//
// There are two kinds:
//
//   - Builtin is an in-process SSH server. It serves the document's host key,
//     lets in exactly the document's user with exactly the document's keys,
//     and runs shells, commands and the sftp subsystem as the OS user running
//     the gateway, with HOME set to Dir/home, starting in HOME. It forwards
//     direct-tcpip channels (ssh -L), listens for remote forwards (ssh -R,
//     port 0 included) on its own loopback address whatever address the
//     client names, as sshd with GatewayPorts no listens on loopback, and
//     forwards the agent (ssh -A) through a per-session socket named by
//     SSH_AUTH_SOCK. A command too long to execute fails as under sshd: the
//     shell's error on stderr, exit status 1. Unlike sshd, it does not wait
//     for background jobs that keep a command's output open: two seconds
//     after the command exits it sends what is buffered and ends the session.
//   - OpenSSH runs a real sshd process configured from the document. sshd
//     logs in real OS users only, so the user that logs in is the OS user
//     running the gateway (root in CI): when this kind is used, the gateway's
//     instance user must be that user (see OpenSSHUser). sshd serves no
//     signal requests for root logins.
//
// The instance user has no entry in the host's user database. With
// nss_wrapper installed (Debian: libnss-wrapper), each machine writes
// Dir/passwd and Dir/group, the host's entries with the instance user's
// first and Dir/home as its home, and preloads nss_wrapper with them: into
// the builtin machine's sessions and into sshd and its sessions. So `~user`
// expands to HOME (Ansible's scp transfers), `id -un` names the instance
// user, and sshd starts sessions in HOME. Without nss_wrapper a warning is
// logged once; `~user` then does not expand, and sshd starts sessions in the
// OS user's own home folder.
//
// The home volume. A machine's document may name one (Document.HomeDevice),
// which boot records in var/lib/cloud-instance/home-device under RootDir,
// as the image's bootstrap script does, personalise mode included. The
// local cloud makes an attached volume appear where the image finds its
// block device: a link under RootDir at the device's path
// (dev/disk/by-id/scsi-0HC_Volume_<id>) to the volume's folder. The
// machine mounts what the record names (home.go), as the image's
// cloud-instance-home unit does: "mounting" makes Dir/home a link to the
// volume's folder and sets the machine's own home aside in
// Dir/home.beneath (OwnHome), so HOME stays Dir/home and a session on a
// connection opened earlier (sshd keeps the home folder per connection,
// the gateway shares connections) finds the volume too. A recorded device
// that is there is mounted, its folder seeded with the login files below
// when empty and the agent state file in it removed; one that is not there
// leaves the machine's own home, with a warning in the log; no record, the
// machine's own. It mounts at each start (which begins unmounted, as a
// boot does), when the local cloud attaches or detaches a volume
// (Machine.Remount), and when cc-instance-personalise, once the script has
// recorded the person's device, asks on the machine's mount address, as
// the image's personalise mode starts the unit: so the personalisation
// returns with the person's home mounted, or fails saying why.
//
// Both kinds keep their folder across Close and a later Start, so files in
// HOME survive a power cycle, and both write Dir/instance-id and Dir/expires
// from the document, where the NixOS image keeps /etc/cloud-instance/{id,expires}.
// Sessions of both kinds get CLOUD_INSTANCE_DIR=Dir, so the gateway's
// expiry update (bootstrap.ExpiresScript) replaces Dir/expires.
//
// Dir/root (RootDir) is laid out as the NixOS image's root, as far as its
// bootstrap script writes it: etc/ssh/ssh_host_ed25519_key{,.pub},
// etc/ssh/authorized_keys.bootstrap/USER (the keys both kinds accept, read
// at each login as sshd reads them) and var/lib/cloud-instance. Each start
// does there what the image's bootstrap unit does at boot (boot.go), warm
// pool included: a pool document (Document.Pool) marks the machine a pool
// machine (var/lib/cloud-instance/pool), unless the machine was
// personalised since, when it runs with the saved personalisation instead,
// as the local cloud, like Hetzner, keeps the pool user_data; any other
// document forgets the pool state. Sessions find cc-instance-personalise in
// Dir/bin, so the gateway's claim (bootstrap.PersonaliseCommand, the
// person's document on standard input) is the same command line as on
// NixOS: it runs the image's own bootstrap script (nix.BootstrapScript,
// kept as Dir/bootstrap.sh) in its personalise mode on Dir/root, with
// CLOUD_INSTANCE_DIR=Dir for the expiry, as the machine's user, not root.
// That script needs jq and ssh-keygen on the host. Its checks and files are
// the image's: after it, new connections accept the person's key at once.
//
// Both run the host's tmux for persistent sessions, each machine on a tmux
// server of its own (TMUX_TMPDIR names a private folder in the host's
// temporary folder): all machines run as one OS user, and must not see each
// other's sessions. Close ends that server and the programs in its sessions,
// as powering a machine off does; a gateway that is killed leaves it running.
//
// Both refuse the keys listed in Dir/revoked_keys, as the NixOS image's sshd
// refuses those of /etc/ssh/revoked_keys (an unreadable file refuses every
// key, as with sshd). The file is made empty once and kept across starts.
// Sessions find the image's cc-instance-revoke-key (nix.RevokeKeyScript),
// which adds a key to it, first on their PATH, in Dir/bin: so the gateway's
// revocation (bootstrap.RevokeKeyCommand) is the same command line as on
// NixOS. Unlike there, it runs as the machine's user, not root. Beside it
// is the image's cc-agent-state (nix.AgentStateScript), which records the
// agent's state under HOME; a start removes that record from Dir/home, as a
// boot does.
//
// Login shells of both kinds read the person's current secrets, as the
// NixOS image's /etc/profile makes them (nix.SecretsEnvScript): each start
// writes the snippet to Dir/secrets-env.sh and, when Dir/home has no
// .profile or .zprofile, ones that source it. So a new window of a
// persistent session sees a secret set or removed after its tmux server
// started.
package machine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/nix"
)

// Config describes one machine.
type Config struct {
	Addr   string             // host:port to listen on, e.g. 127.1.0.5:2022
	Doc    bootstrap.Document // host key, authorized keys, user, instance id
	Dir    string             // the machine's own folder; its own HOME lives under it
	Logger *slog.Logger       // nil discards; sessions and sshd's lines log at debug level
}

// Machine is a running machine. Close stops it and keeps its folder.
// Remount mounts on HOME what the machine's record names, as the image's
// home unit does when it is started: the local cloud calls it when a volume
// is attached to or detached from the running machine.
type Machine interface {
	Close() error
	Remount() error
}

// Names of the files a machine keeps in its folder.
const (
	HomeDir        = "home"           // the user's HOME
	InstanceIDFile = "instance-id"    // the document's instance id and a newline
	ExpiresFile    = "expires"        // the document's expires_at and a newline
	RevokedKeys    = "revoked_keys"   // keys refused whatever the document says
	BinDir         = "bin"            // programs first on the sessions' PATH
	SecretsEnvFile = "secrets-env.sh" // sourced by login shells: the current secrets
)

// profile is what a machine writes to HOME's .profile and .zprofile when
// missing: login shells (sh's and bash's, zsh's) read them, as on the
// NixOS image they read /etc/profile or /etc/zprofile, which source the
// same snippet.
const profile = `# Written by cc-gateway's local machine, once: your own edits stay.
# The secrets you set through the gateway, current in every login shell.
if [ -r "$CLOUD_INSTANCE_DIR/` + SecretsEnvFile + `" ]; then
	. "$CLOUD_INSTANCE_DIR/` + SecretsEnvFile + `"
fi
`

// OpenSSHUser returns the user name that logs in to an OpenSSH machine: the
// OS user running this process.
func OpenSSHUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("look up the current OS user: %w", err)
	}
	return u.Username, nil
}

// CheckOpenSSHUser returns the OS user an OpenSSH machine logs in, or an
// error saying what to set when user, the instance user, is another one:
// sshd only logs in real users.
func CheckOpenSSHUser(user string) (string, error) {
	osUser, err := OpenSSHUser()
	if err != nil {
		return "", err
	}
	if user != osUser {
		return "", fmt.Errorf("the instance user %q is not %q, the OS user running the gateway; sshd machines only log in real users, so set --instance-user %s (or use builtin machines)", user, osUser, osUser)
	}
	return osUser, nil
}

// prepare validates cfg and readies the machine's folder: Dir and HOME
// (its own home: nothing is mounted on it yet, see homes) with mode 0700,
// the metadata files and programs. It returns the absolute Dir.
func prepare(cfg *Config) (string, error) {
	if cfg.Addr == "" {
		return "", errors.New("no listen address")
	}
	if cfg.Dir == "" {
		return "", errors.New("no machine folder")
	}
	if err := cfg.Doc.Validate(); err != nil {
		return "", err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return "", fmt.Errorf("machine folder: %w", err)
	}
	if err := unmountAtStart(dir); err != nil {
		return "", err
	}
	home := filepath.Join(dir, HomeDir)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", fmt.Errorf("create home: %w", err)
	}
	// MkdirAll leaves existing folders alone and obeys the umask; HOME must
	// be private either way.
	for _, d := range []string{dir, home} {
		if err := os.Chmod(d, 0o700); err != nil {
			return "", fmt.Errorf("make %s private: %w", d, err)
		}
	}
	doc, err := boot(dir, cfg.Doc, logger(*cfg).With("machine", cfg.Doc.InstanceID))
	if err != nil {
		return "", err
	}
	cfg.Doc = doc
	if err := writeFile(filepath.Join(dir, InstanceIDFile), []byte(cfg.Doc.InstanceID+"\n")); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, ExpiresFile), []byte(cfg.Doc.ExpiresAt+"\n")); err != nil {
		return "", err
	}
	// Made if missing, never emptied: a revocation outlives restarts.
	f, err := os.OpenFile(filepath.Join(dir, RevokedKeys), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("create revoked keys file: %w", err)
	}
	f.Close()
	// No agent runs on a machine that just started, as a NixOS boot
	// removes the file.
	if err := os.Remove(filepath.Join(home, bootstrap.AgentStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("forget the agent's state: %w", err)
	}
	if err := installPrograms(dir); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, SecretsEnvFile), []byte(nix.SecretsEnvScript)); err != nil {
		return "", err
	}
	if err := installLoginFiles(home); err != nil {
		return "", err
	}
	return dir, nil
}

// installPrograms writes the image's commands into Dir/bin, and the
// bootstrap script that one of them runs into Dir, fresh at every start;
// cc-instance-personalise comes with the machine's mount address (see
// startHomes).
func installPrograms(dir string) error {
	if err := installBootstrap(dir); err != nil {
		return err
	}
	for name, script := range map[string]string{
		bootstrap.RevokeKeyProgram:  nix.RevokeKeyScript,
		bootstrap.AgentStateProgram: nix.AgentStateScript,
	} {
		if err := installProgram(dir, name, script); err != nil {
			return err
		}
	}
	return nil
}

// installProgram writes one command into Dir/bin.
func installProgram(dir, name, script string) error {
	bin := filepath.Join(dir, BinDir)
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", bin, err)
	}
	program := filepath.Join(bin, name)
	if err := writeFile(program, []byte(script)); err != nil {
		return err
	}
	if err := os.Chmod(program, 0o700); err != nil {
		return fmt.Errorf("make %s executable: %w", program, err)
	}
	return nil
}

// installLoginFiles writes the login shells' files that source the
// secrets snippet (written fresh at every start) where home has none.
func installLoginFiles(home string) error {
	for _, name := range []string{".profile", ".zprofile"} {
		path := filepath.Join(home, name)
		switch _, err := os.Lstat(path); {
		case err == nil:
			continue // the person's own, kept
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("look for %s: %w", name, err)
		}
		if err := writeFile(path, []byte(profile)); err != nil {
			return err
		}
	}
	return nil
}

// sessionPath is the PATH of the sessions of the machine in dir.
func sessionPath(dir string) string {
	return filepath.Join(dir, BinDir) + string(filepath.ListSeparator) + defaultPath()
}

// writeFile replaces path atomically with a private file holding data.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func logger(cfg Config) *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}
