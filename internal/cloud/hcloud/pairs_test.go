package hcloud_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// progress collects what the provider tells the person.
type progress struct {
	mu    sync.Mutex
	lines []string
}

func (p *progress) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, fmt.Sprintf(format, args...))
}

func (p *progress) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// soldOutEnv is a local cloud that has sold out the pairs given, and a
// provider configured with the server types and locations given.
func soldOutEnv(t *testing.T, unavailable, types, locations []string, tweaks ...func(*hcloud.Config)) (*testEnv, *hcloud.Provider) {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), port: testkit.FreePort(t), kind: localcloud.KindBuiltin}
	e.cloud = startCloud(t, e.dir, e.port, e.kind, &localcloud.RandomFaults{Unavailable: unavailable})
	e.raw = hc.NewClient(hc.WithEndpoint(e.cloud.Endpoint()), hc.WithToken(e.cloud.Token()))
	tweaks = append([]func(*hcloud.Config){func(c *hcloud.Config) { c.ServerTypes, c.Locations = types, locations }}, tweaks...)
	return e, newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), tweaks...)
}

// createTold creates a server for a new person of lease leaseID with p,
// collecting what p tells them.
func createTold(t *testing.T, ctx context.Context, p *hcloud.Provider, leaseID string, port int) (person, lease.Server, *progress) {
	t.Helper()
	who := newPerson(t, leaseID, port)
	told := &progress{}
	who.spec.Progress = told.add
	srv, err := p.Create(ctx, who.spec)
	if err != nil {
		t.Fatal(err)
	}
	return who, srv, told
}

// TestCreateMovesPastSoldOutPairs: every location with the first type,
// then the next type; each move is told, the server is where it went, and
// a create repeated after a crash finds it instead of trying again.
func TestCreateMovesPastSoldOutPairs(t *testing.T) {
	t.Parallel()
	e, p := soldOutEnv(t, []string{"cx23@fsn1", "cx23@nbg1"}, []string{"cx23", "cx33"}, []string{"fsn1", "nbg1"})
	ctx := testkit.Context(t, 30*time.Second)
	who, srv, told := createTold(t, ctx, p, "pairs1", e.port)
	if srv.ServerType != "cx33" || srv.Location != "fsn1" {
		t.Errorf("server is %s in %s, want cx33 in fsn1", srv.ServerType, srv.Location)
	}
	want := []string{"cx23 is sold out in fsn1; trying nbg1", "cx23 is sold out in nbg1; trying cx33 in fsn1"}
	if got := told.get(); !slices.Equal(got, want) {
		t.Errorf("progress %q, want %q", got, want)
	}
	if err := who.wait(ctx, e.addr(srv), who.hostKey); err != nil {
		t.Fatalf("the machine does not answer: %v", err)
	}

	var again progress
	who.spec.Progress = again.add
	retried, err := p.Create(ctx, who.spec)
	if err != nil || retried.ID != srv.ID {
		t.Fatalf("repeated create: server %d, %v; want the first, %d", retried.ID, err, srv.ID)
	}
	if got := again.get(); len(got) != 0 {
		t.Errorf("a repeated create tried pairs again: %q", got)
	}
	if list, _ := e.raw.Server.All(ctx); len(list) != 1 {
		t.Errorf("%d servers, want one", len(list))
	}
}

// TestCreateAllSoldOut: when every pair is sold out, one sentence names
// the pairs tried and the fix, and Hetzner's error stays reachable.
func TestCreateAllSoldOut(t *testing.T) {
	t.Parallel()
	e, p := soldOutEnv(t, []string{"cx23@fsn1", "cx23@hel1"}, []string{"cx23"}, []string{"fsn1", "hel1"})
	ctx := testkit.Context(t, 30*time.Second)
	who := newPerson(t, "pairs2", e.port)
	var told progress
	who.spec.Progress = told.add
	_, err := p.Create(ctx, who.spec)
	want := "create server: Hetzner has no room for cx23 in fsn1, cx23 in hel1 right now (error during placement, resource_unavailable): " +
		"try again later, or add server types to --server-type or locations to --location"
	if err == nil || err.Error() != want {
		t.Fatalf("create: %v\nwant %s", err, want)
	}
	if !hc.IsError(err, hc.ErrorCodeResourceUnavailable) {
		t.Errorf("Hetzner's error is lost: %#v", err)
	}
	if got := told.get(); !slices.Equal(got, []string{"cx23 is sold out in fsn1; trying hel1"}) {
		t.Errorf("progress %q", got)
	}
	if list, _ := e.raw.Server.All(ctx); len(list) != 0 {
		t.Errorf("servers left behind: %d", len(list))
	}
}

// TestCreateSkipsPairsNoLongerOnSale: a deprecated type past its last day
// is not tried (preflight warned of it); the next pair serves.
func TestCreateSkipsPairsNoLongerOnSale(t *testing.T) {
	t.Parallel()
	later := func(c *hcloud.Config) { c.Clock = testkit.NewClock(time.Now().AddDate(1, 0, 0)) }
	e, p := soldOutEnv(t, nil, []string{"cx22", "cx23"}, []string{"nbg1"}, later)
	_, srv, told := createTold(t, testkit.Context(t, 30*time.Second), p, "pairs3", e.port)
	if srv.ServerType != "cx23" || srv.Location != "nbg1" || len(told.get()) != 0 {
		t.Errorf("server is %s in %s after %q, want cx23 in nbg1 at once", srv.ServerType, srv.Location, told.get())
	}
}

// TestCreateRefusalsNameTheFix: Hetzner's refusals of a create that no
// other pair would change end it at once, with a sentence naming the fix.
func TestCreateRefusalsNameTheFix(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.Locations = []string{"fsn1", "nbg1"} })
	postServers := route{http.MethodPost, regexp.MustCompile(`^/v1/servers$`)}
	for code, says := range map[string]string{
		"resource_limit_exceeded": "the Hetzner project has reached its limit (test fault: resource_limit_exceeded): delete servers, snapshots or keys it no longer needs, or ask Hetzner to raise the project's limits",
		"invalid_server_type":     "Hetzner will not use this server type (test fault: invalid_server_type): it does not fit or is deprecated; choose another --server-type",
	} {
		var posts hits
		e.faults.onRequest(failAll(&posts, postServers, http.StatusForbidden, code))
		_, err := p.Create(ctx, newPerson(t, "refused-"+strings.ReplaceAll(code, "_", "-"), e.port).spec)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v\nwant it to say %s", code, err, says)
		}
		if posts.count() != 1 {
			t.Errorf("%s: the create was sent %d times, want once", code, posts.count())
		}
	}
}

// TestPreflightSoldOut: a sold-out pair is a warning, never a problem:
// stock changes by the hour, and creates move on past it.
func TestPreflightSoldOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		locations []string
		says      string
	}{
		{[]string{"fsn1", "nbg1"}, "Hetzner has sold out cx23 in fsn1 right now: new machines go to the next pair in order"},
		{[]string{"fsn1"}, "Hetzner has sold out cx23 in fsn1 right now: new machines cannot be created until it has room again"},
	} {
		_, p := soldOutEnv(t, []string{"cx23@fsn1"}, []string{"cx23"}, tc.locations)
		var warned []string
		for _, c := range p.Preflight(testkit.Context(t, 30*time.Second)) {
			if !c.OK() {
				t.Errorf("%v: %s: %s", tc.locations, c.Name, c.Problem)
			}
			if c.Warning != "" {
				warned = append(warned, c.Name+": "+c.Warning)
			}
		}
		if len(warned) != 1 || !strings.HasPrefix(warned[0], "stock: "+tc.says) {
			t.Errorf("%v: warnings %q, want one saying %q", tc.locations, warned, tc.says)
		}
	}
}

// TestRestoreNeedsABigEnoughDisk: a machine that went to a bigger type
// because the cheap one was sold out is restored from its snapshot on a
// type whose disk holds it, not on the cheap one first in order.
func TestRestoreNeedsABigEnoughDisk(t *testing.T) {
	t.Parallel()
	types := []string{"cx23", "cx33"}
	e, p := soldOutEnv(t, []string{"cx23@fsn1"}, types, []string{"fsn1"})
	ctx := testkit.Context(t, 30*time.Second)
	who := newPerson(t, "restore1", e.port)
	srv, err := p.Create(ctx, who.spec)
	if err != nil || srv.ServerType != "cx33" {
		t.Fatalf("create: %s, %v; want cx33", srv.ServerType, err)
	}
	if err := p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	im, err := p.Snapshot(ctx, srv.ID, "restore1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	// cx23 is on sale in nbg1, but its 40 GB disk cannot hold cx33's 80.
	elsewhere := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.ServerTypes, c.Locations = types, []string{"nbg1"} })
	who.spec.ImageID = im.ID
	back, err := elsewhere.Create(ctx, who.spec)
	if err != nil || back.ServerType != "cx33" || back.Location != "nbg1" {
		t.Fatalf("restore: %s in %s, %v; want cx33 in nbg1", back.ServerType, back.Location, err)
	}
}
