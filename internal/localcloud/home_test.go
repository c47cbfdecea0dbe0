package localcloud_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// homeCloud is a local cloud of one kind with a person, the gateway's key
// and the person's home volume, driven through the API.
type homeCloud struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	port    int
	user    string // the instance user
	raw     *hc.Client
	person  testkit.Key
	keyFile string
	gateway testkit.Key
	vol     *hc.Volume
	folder  string // the volume's folder
}

func newHomeCloud(t *testing.T, kind, user string) *homeCloud {
	h := &homeCloud{t: t, ctx: testkit.Context(t, time.Minute), dir: t.TempDir(), port: testkit.FreePort(t), user: user,
		person: testkit.NewKey(t), gateway: testkit.NewKey(t)}
	h.keyFile = h.person.WriteFile(t, filepath.Join(t.TempDir(), "person"))
	c, err := localcloud.Start(localcloud.Options{
		DataDir: h.dir, SSHPort: h.port, Kind: kind, ActionDuration: 20 * time.Millisecond, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	h.raw = rawClient(c.Endpoint(), c.Token())
	h.vol = createVolume(h.ctx, t, h.raw, "home-p", "fsn1")
	h.folder = filepath.Join(h.dir, "volumes", strconv.FormatInt(h.vol.ID, 10))
	return h
}

// document is the bootstrap document of server cc-NAME: the person's
// with their home device, or a pool document.
func (h *homeCloud) document(name string, pool bool, hostKeyPEM []byte) bootstrap.Document {
	h.t.Helper()
	keys, expires := []ssh.PublicKey{h.person.Public(), h.gateway.Public()}, time.Now().Add(time.Hour)
	if pool {
		keys, expires = []ssh.PublicKey{h.gateway.Public()}, time.Time{}
	}
	doc, err := bootstrap.New("cc-"+name, "cc-"+name, h.user, expires, h.port, keys, hostKeyPEM)
	if err != nil {
		h.t.Fatal(err)
	}
	doc.Pool = pool
	if !pool {
		doc.HomeDevice = h.vol.LinuxDevice
	}
	return doc
}

// create creates a running server from doc, with the volume attached when
// asked to.
func (h *homeCloud) create(doc bootstrap.Document, withVolume bool) *hc.Server {
	h.t.Helper()
	userData, err := doc.Render()
	if err != nil {
		h.t.Fatal(err)
	}
	opts := hc.ServerCreateOpts{
		Name: doc.InstanceID, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		UserData: userData, Location: &hc.Location{Name: "fsn1"},
	}
	if withVolume {
		opts.Volumes = []*hc.Volume{h.vol}
	}
	res, _, err := h.raw.Server.Create(h.ctx, opts)
	if err != nil {
		h.t.Fatalf("create %s: %v", doc.InstanceID, err)
	}
	if err := h.raw.Action.WaitFor(h.ctx, append(res.NextActions, res.Action)...); err != nil {
		h.t.Fatal(err)
	}
	return res.Server
}

// attach attaches the volume to a server, or detaches it (s nil), and
// waits for the action.
func (h *homeCloud) attach(s *hc.Server) {
	h.t.Helper()
	var a *hc.Action
	var err error
	if s == nil {
		a, _, err = h.raw.Volume.Detach(h.ctx, h.vol)
	} else {
		a, _, err = h.raw.Volume.Attach(h.ctx, h.vol, s)
	}
	waitFor(h.ctx, h.t, h.raw, a, err)
}

// ssh runs command on server s with the real ssh client and the person's
// key, pinning the host key of doc, and returns its standard output.
func (h *homeCloud) ssh(s *hc.Server, doc bootstrap.Document, command string) string {
	h.t.Helper()
	host := s.PublicNet.IPv4.IP.String()
	knownHosts := filepath.Join(h.t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(fmt.Sprintf("[%s]:%d %s\n", host, h.port, doc.HostKey.Public)), 0o600); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-i", h.keyFile, "-p", strconv.Itoa(h.port),
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", h.user+"@"+host, command)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("ssh %s %q: %v, stderr %q", s.Name, command, err, stderr.String())
	}
	return stdout.String()
}

// home is the folder that the HOME of a new session on s, always the
// machine's home folder, really is.
func (h *homeCloud) home(s *hc.Server, doc bootstrap.Document) string {
	h.t.Helper()
	got := h.ssh(s, doc, `printf '%s\n%s' "$HOME" "$(cd && pwd -P)"`)
	home, real, _ := strings.Cut(got, "\n")
	if home != h.ownHome(s) {
		h.t.Fatalf("HOME on %s is %q, want %q", s.Name, home, h.ownHome(s))
	}
	return real
}

func (h *homeCloud) ownHome(s *hc.Server) string {
	return filepath.Join(h.dir, "machines", s.Name, machine.HomeDir)
}

// TestHomeVolumeThroughTheCloud: through the API and the real ssh client,
// a person's home volume is mounted on the HOME of every machine it is
// attached to whose document names it: a file written on one machine is
// there on the next, another server with a folder of its own; detached
// from a running machine, the next session's HOME is the machine's own,
// attached again it is the volume, which a snapshot leaves out; a pool
// machine that the volume is attached to and that is then personalised
// with a document naming it, as a claim does, has it as the next
// session's HOME, and after a power cycle too.
func TestHomeVolumeThroughTheCloud(t *testing.T) {
	for _, kind := range []string{localcloud.KindBuiltin, localcloud.KindOpenSSH} {
		t.Run(kind, func(t *testing.T) {
			user := "claude"
			if kind == localcloud.KindOpenSSH {
				user = localcloudtest.OpenSSHUser(t)
			}
			testHomeVolumeThroughTheCloud(t, newHomeCloud(t, kind, user))
		})
	}
}

func testHomeVolumeThroughTheCloud(t *testing.T, h *homeCloud) {
	docA := h.document("home-a", false, testkit.NewKey(t).PEM)
	a := h.create(docA, true)
	h.ssh(a, docA, `echo kept > ~/x`)
	if home := h.home(a, docA); home != h.folder {
		t.Fatalf("HOME on the first machine is %q, want the volume's folder %q", home, h.folder)
	}
	if b, err := os.ReadFile(filepath.Join(h.folder, "x")); err != nil || string(b) != "kept\n" {
		t.Fatalf("the file in the volume's folder: %q, %v", b, err)
	}
	deleted, _, err := h.raw.Server.DeleteWithResult(h.ctx, a)
	waitFor(h.ctx, t, h.raw, deleted.Action, err)

	docB := h.document("home-b", false, testkit.NewKey(t).PEM)
	b := h.create(docB, true)
	if got := h.ssh(b, docB, `cat ~/x`); got != "kept\n" {
		t.Fatalf("the file on the next machine: %q", got)
	}

	// Hot-unplugged and plugged again: the next session follows.
	h.attach(nil)
	if home := h.home(b, docB); home != h.ownHome(b) {
		t.Errorf("HOME with the volume detached %q, want the machine's own %q", home, h.ownHome(b))
	}
	h.attach(b)
	if home := h.home(b, docB); home != h.folder {
		t.Errorf("HOME with the volume attached again %q, want %q", home, h.folder)
	}
	// A snapshot is of the machine's own disk, not of the volume on it.
	im := filepath.Join(h.dir, "images", strconv.FormatInt(snapshot(t, h.ctx, h.raw, b, nil).ID, 10), machine.HomeDir)
	if _, err := os.Stat(filepath.Join(im, ".profile")); err != nil {
		t.Errorf("the machine's own home in its snapshot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(im, "x")); !os.IsNotExist(err) {
		t.Errorf("the volume's file in a snapshot: %v", err)
	}
	h.attach(nil)

	// A warm pool machine: the volume attached while it runs, then the
	// person's document, naming it, personalises it.
	hostKey := testkit.NewKey(t).PEM
	pool := h.create(h.document("home-p", true, hostKey), false)
	h.attach(pool)
	person := h.document("home-p", false, hostKey)
	rendered, err := person.Render()
	if err != nil {
		t.Fatal(err)
	}
	conns := proxy.NewPool(proxy.PoolOptions{Key: h.gateway.Signer})
	defer conns.Close()
	addr := net.JoinHostPort(pool.PublicNet.IPv4.IP.String(), strconv.Itoa(h.port))
	if err := proxy.NewMachines(conns, h.user).Personalise(h.ctx, addr, person.HostKey.Public, rendered); err != nil {
		t.Fatalf("personalise: %v", err)
	}
	if got := h.ssh(pool, person, `cat ~/x`); got != "kept\n" {
		t.Errorf("the file on the personalised pool machine: %q", got)
	}

	// Powered off and on, it boots with its pool document again, applies
	// the saved personalisation, and its device with it.
	off, _, err := h.raw.Server.Poweroff(h.ctx, pool)
	waitFor(h.ctx, t, h.raw, off, err)
	on, _, err := h.raw.Server.Poweron(h.ctx, pool)
	waitFor(h.ctx, t, h.raw, on, err)
	if home := h.home(pool, person); home != h.folder {
		t.Errorf("HOME after a power cycle %q, want %q", home, h.folder)
	}
}
