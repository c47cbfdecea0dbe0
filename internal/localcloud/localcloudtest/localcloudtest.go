// Package localcloudtest starts a local cloud, with the Hetzner provider on
// its API, for tests in other packages, in the way net/http/httptest starts
// HTTP servers: on loopback, in a temporary folder, closed when the test
// ends.
//
// Tests that start the cloud in a way of their own (injected faults, a
// restart on the same folder, a provider configured otherwise) call
// localcloud.Start and hcloud.New themselves.
package localcloudtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// Short enough that a test hardly waits for the fake cloud, long enough
// that actions are seen running and polled more than once.
const (
	// ActionDuration is how long the cloud's actions stay "running".
	ActionDuration = 10 * time.Millisecond
	// PollInterval is how often the provider polls an action.
	PollInterval = 10 * time.Millisecond
)

// Cloud is a running local cloud and a Hetzner provider that talks to it.
type Cloud struct {
	*localcloud.Cloud
	// Provider is the real Hetzner provider on the cloud's API, picking
	// the local image (localcloud.LocalImageLabel).
	Provider *hcloud.Provider
	// SSHPort is the port every machine listens on, each on its own
	// loopback address.
	SSHPort int
	// DataDir is the cloud's folder: state.json and machines/NAME/.
	DataDir string
}

// Start starts a local cloud whose machines are of the given kind
// (localcloud.KindBuiltin or localcloud.KindOpenSSH) in a temporary folder,
// on a free port, and makes a provider for it. Both log nothing. The cloud
// is closed, and its machines stopped, when the test ends.
func Start(t testing.TB, kind string) *Cloud {
	t.Helper()
	c := &Cloud{SSHPort: FreePort(t), DataDir: t.TempDir()}
	var err error
	c.Cloud, err = localcloud.Start(localcloud.Options{
		DataDir: c.DataDir, SSHPort: c.SSHPort, Kind: kind, ActionDuration: ActionDuration, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() { c.Cloud.Close() })
	c.Provider, err = hcloud.New(hcloud.Config{
		Token: c.Token(), Endpoint: c.Endpoint(), ImageSelector: localcloud.LocalImageLabel,
		PollInterval: PollInterval, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	return c
}

// OpenSSHUser skips the test where OpenSSH's server is not installed, and
// returns the user that logs in to machines of localcloud.KindOpenSSH.
func OpenSSHUser(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH server not installed")
	}
	user, err := machine.OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	return user
}

// FreePort is testkit.FreePort, for the tests that pick a local cloud's
// machine port (Options.SSHPort) themselves.
var FreePort = testkit.FreePort

// Spec is a lease's create spec as the lease manager makes it, for the
// server cc-LEASEID: a bootstrap document (expiring in an hour) that
// authorizes person for user on port, with a fresh host key. It returns
// that host key's public half too, in authorized_keys form, for pinning.
func Spec(t testing.TB, leaseID, user string, port int, person ssh.PublicKey) (lease.CreateSpec, string) {
	t.Helper()
	name := "cc-" + leaseID
	doc, err := bootstrap.New(name, name, user, time.Now().Add(time.Hour), port, []ssh.PublicKey{person}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	userData, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	return lease.CreateSpec{
		Name: name, LeaseID: leaseID, UserData: userData, PublicKey: testkit.AuthorizedKey(person),
	}, doc.HostKey.Public
}

// Credentials reads the API's endpoint and token from the file a local
// cloud keeps them in (localcloud.CredentialsFile in its folder dir), as
// Hetzner's hcloud CLI would.
func Credentials(t testing.TB, dir string) (endpoint, token string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, localcloud.CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env["HCLOUD_ENDPOINT"], env["HCLOUD_TOKEN"]
}
