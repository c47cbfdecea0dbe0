package machine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/nix"
)

// RootDir is the folder in a machine's folder laid out as the NixOS image's
// root, for the image's bootstrap script (nix.BootstrapScript), which
// cc-instance-personalise runs on it. Paths under it are those of the
// image.
const RootDir = "root"

// Paths under RootDir.
const (
	hostKeyPath         = "etc/ssh/ssh_host_ed25519_key"
	authorizedKeysDir   = "etc/ssh/authorized_keys.bootstrap" // one file per user, as sshd's %u
	stateDir            = "var/lib/cloud-instance"
	poolPath            = stateDir + "/pool"            // a pool machine's instance id
	personalisationPath = stateDir + "/personalisation" // the document that personalised it
)

// bootstrapScriptFile is where in its folder a machine keeps the image's
// bootstrap script: not on the sessions' PATH, which has its wrapper.
const bootstrapScriptFile = "bootstrap.sh"

// boot does what the image's bootstrap unit does when a machine boots with
// doc as its user_data, and returns the document the machine runs with.
// A pool document marks the machine a pool machine, unless the machine was
// personalised since (the saved personalisation has doc's instance id):
// the user_data of a server never changes, so a personalised machine powered
// off and on boots with its pool document again, and keeps its person. Any
// other document forgets the pool state. The machine's host key and the
// authorized keys of the document it runs with go where the image's sshd
// has them, its home device where the image's home unit finds it.
func boot(dir string, doc bootstrap.Document, log *slog.Logger) (bootstrap.Document, error) {
	root := filepath.Join(dir, RootDir)
	for _, d := range []string{authorizedKeysDir, stateDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return bootstrap.Document{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	pool, saved := filepath.Join(root, poolPath), filepath.Join(root, personalisationPath)
	switch person, err := readPersonalisation(saved); {
	case err != nil:
		return bootstrap.Document{}, err
	case !doc.Pool:
		if err := removeFiles(pool, saved); err != nil {
			return bootstrap.Document{}, err
		}
	case person != nil && person.InstanceID == doc.InstanceID:
		log.Info("the user_data is the pool document of a machine personalised since: applying the saved personalisation")
		doc = *person
		// A personalisation that crashed before removing it.
		if err := removeFiles(pool); err != nil {
			return bootstrap.Document{}, err
		}
	default:
		if err := removeFiles(saved); err != nil {
			return bootstrap.Document{}, err
		}
		if err := writeFile(pool, []byte(doc.InstanceID+"\n")); err != nil {
			return bootstrap.Document{}, err
		}
	}
	files := map[string]string{
		hostKeyPath:                        doc.HostKey.Private,
		hostKeyPath + ".pub":               doc.HostKey.Public + "\n",
		authorizedKeysDir + "/" + doc.User: strings.Join(doc.AuthorizedKeys, "\n") + "\n",
	}
	for path, content := range files {
		if err := writeFile(filepath.Join(root, path), []byte(content)); err != nil {
			return bootstrap.Document{}, err
		}
	}
	if err := recordHomeDevice(root, doc); err != nil {
		return bootstrap.Document{}, err
	}
	return doc, nil
}

// readPersonalisation returns the document saved at path by the bootstrap
// script's personalise mode, or nil if there is none.
func readPersonalisation(path string) (*bootstrap.Document, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the saved personalisation: %w", err)
	}
	doc, err := bootstrap.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("the saved personalisation: %w", err)
	}
	if doc.Pool {
		return nil, errors.New("the saved personalisation is a pool document")
	}
	return &doc, nil
}

func removeFiles(paths ...string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("forget the pool state: %w", err)
		}
	}
	return nil
}

// authorizedKeysFile is where the machine in dir keeps user's authorized
// keys, as the image's sshd has them.
func authorizedKeysFile(dir, user string) string {
	return filepath.Join(dir, RootDir, authorizedKeysDir, user)
}

// personaliseWrapper is the machine's cc-instance-personalise: the image's
// bootstrap script in its personalise mode, on the machine's tree, with the
// machine's own values; as on NixOS, the caller's environment names none
// of them. Where the image's personalise mode then starts the unit that
// mounts the home volume, this one asks the machine on its mount address
// (see homes) and fails as that would if the mount fails.
func personaliseWrapper(dir, addr, user, mount string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("machine address: %w", err)
	}
	mountHost, mountPort, err := net.SplitHostPort(mount)
	if err != nil {
		return "", fmt.Errorf("mount address: %w", err)
	}
	return fmt.Sprintf(`#!/bin/sh
# %s of a local machine: the image's bootstrap script, personalise mode.
for program in jq bash; do
	if ! command -v "$program" >/dev/null 2>&1; then
		echo "%[1]s: $program is not installed on the gateway's host (Debian: apt-get install $program); local machines need it to be personalised" >&2
		exit 1
	fi
done
CLOUD_INSTANCE_ROOT=%[2]s CLOUD_INSTANCE_DIR=%[3]s CLOUD_INSTANCE_USER=%[4]s CLOUD_INSTANCE_SSH_PORT=%[5]s
export CLOUD_INSTANCE_ROOT CLOUD_INSTANCE_DIR CLOUD_INSTANCE_USER CLOUD_INSTANCE_SSH_PORT
/bin/sh %[6]s personalise || exit
answer=$(bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 30 line <&3 && printf %%s "$line"' %[1]s %[7]s %[8]s)
if [ "$answer" != ok ]; then
	echo "%[1]s: personalised, but the home volume is not mounted: ${answer:-the machine did not answer}; the same document again tries again" >&2
	exit 1
fi
`, bootstrap.PersonaliseProgram, bootstrap.ShellQuote(filepath.Join(dir, RootDir)), bootstrap.ShellQuote(dir), bootstrap.ShellQuote(user), port,
		bootstrap.ShellQuote(filepath.Join(dir, bootstrapScriptFile)), bootstrap.ShellQuote(mountHost), mountPort), nil
}

// installBootstrap writes the image's bootstrap script into the machine's
// folder, fresh at every start.
func installBootstrap(dir string) error {
	return writeFile(filepath.Join(dir, bootstrapScriptFile), []byte(nix.BootstrapScript))
}
