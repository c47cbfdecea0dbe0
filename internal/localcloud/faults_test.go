package localcloud_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// outcomes feeds a fixed mix of requests and actions to f and notes what
// each met.
func outcomes(f localcloud.Faults, n int) []string {
	var out []string
	for i := range n {
		method, path := http.MethodGet, "/v1/servers"
		if i%3 == 0 {
			method, path = http.MethodPost, "/v1/servers/7/actions/poweron"
		}
		w := httptest.NewRecorder()
		status := 0
		if f.Request(w, httptest.NewRequest(method, path, nil)) {
			status = w.Code
		}
		af := f.Action("start_server")
		out = append(out, method+" "+strconv.Itoa(status)+" "+af.Code+" "+af.Delay.String())
	}
	return out
}

func TestRandomFaults(t *testing.T) {
	// The same seed gives the same faults; another seed others.
	a := outcomes(&localcloud.RandomFaults{Rate: 0.3, Seed: 7}, 300)
	b := outcomes(&localcloud.RandomFaults{Rate: 0.3, Seed: 7}, 300)
	c := outcomes(&localcloud.RandomFaults{Rate: 0.3, Seed: 8}, 300)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with seed 7 met different faults")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 met the same faults")
	}

	// Actions draw from their own stream: polling in between does not
	// change which action fails.
	quiet := &localcloud.RandomFaults{Rate: 0.3, Seed: 7}
	busy := &localcloud.RandomFaults{Rate: 0.3, Seed: 7}
	for i := range 50 {
		for range i % 4 {
			busy.Request(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/actions?id=1", nil))
		}
		if q, b := quiet.Action("create_server"), busy.Action("create_server"); q != b {
			t.Fatalf("action %d: %+v without polling, %+v with", i, q, b)
		}
	}

	if got := outcomes(&localcloud.RandomFaults{Rate: 0, Seed: 1}, 200); strings.Contains(strings.Join(got, "|"), "action_failed") {
		t.Fatal("rate 0 injected faults")
	}
	always := &localcloud.RandomFaults{Rate: 1, Seed: 1, SlowAction: 3 * time.Second}
	seen := map[string]bool{}
	for _, o := range outcomes(always, 300) {
		f := strings.Fields(o)
		if f[1] == "0" {
			t.Fatalf("rate 1 let a request through: %s", o)
		}
		seen[f[0]+" "+f[1]] = true
		if len(f) == 3 {
			seen["slow "+f[2]] = true
		} else {
			seen["failed"] = true
		}
	}
	for _, want := range []string{"GET 503", "GET 500", "GET 429", "POST 503", "POST 500", "POST 429", "POST 423", "POST 409", "slow 3s", "failed"} {
		if !seen[want] {
			t.Errorf("rate 1 never gave %q (saw %v)", want, seen)
		}
	}
	// Locked and conflict answers belong to server actions only.
	if seen["GET 423"] || seen["GET 409"] {
		t.Errorf("a GET was answered locked or conflict: %v", seen)
	}
	counts := always.Counts()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != 600 {
		t.Errorf("counts %v add up to %d, want 600", counts, total)
	}

	// A 429 carries Hetzner's rate-limit headers and error code.
	limited := &localcloud.RandomFaults{Rate: 1, Seed: 1, RateLimitReset: 90 * time.Second}
	for range 100 {
		w := httptest.NewRecorder()
		limited.Request(w, httptest.NewRequest(http.MethodGet, "/v1/servers", nil))
		if w.Code != http.StatusTooManyRequests {
			continue
		}
		reset, err := strconv.ParseInt(w.Header().Get("RateLimit-Reset"), 10, 64)
		if err != nil || w.Header().Get("RateLimit-Remaining") != "0" || w.Header().Get("RateLimit-Limit") == "" {
			t.Fatalf("429 headers: %v", w.Header())
		}
		if ahead := time.Until(time.Unix(reset, 0)); ahead < 89*time.Second || ahead > 92*time.Second {
			t.Fatalf("RateLimit-Reset is %v ahead, want 90s", ahead)
		}
		if !strings.Contains(w.Body.String(), `"code":"rate_limit_exceeded"`) {
			t.Fatalf("429 body: %s", w.Body)
		}
		return
	}
	t.Fatal("no 429 in 100 requests at rate 1")
}

func TestParseFaults(t *testing.T) {
	for _, spec := range []string{"", "off", "  "} {
		if f, err := localcloud.ParseFaults(spec); f != nil || err != nil {
			t.Errorf("ParseFaults(%q) = %v, %v; want no faults", spec, f, err)
		}
	}
	f, err := localcloud.ParseFaults("rate=0.2,seed=7")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.Rate != 0.2 || rf.Seed != 7 {
		t.Fatalf("rate=0.2,seed=7: %#v, %v", f, err)
	}
	f, err = localcloud.ParseFaults("rate=1, seed=-3, slow=2s, reset=500ms")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.Rate != 1 || rf.Seed != -3 || rf.SlowAction != 2*time.Second || rf.RateLimitReset != 500*time.Millisecond {
		t.Fatalf("full setting: %#v, %v", f, err)
	}
	// A server that ignores shutdowns needs no rate.
	f, err = localcloud.ParseFaults("ignore-shutdown")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.IgnoreShutdown != 1 || rf.Rate != 0 {
		t.Fatalf("ignore-shutdown: %#v, %v", f, err)
	}
	f, err = localcloud.ParseFaults("rate=0.1,ignore-shutdown=0.25")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.IgnoreShutdown != 0.25 || rf.Rate != 0.1 {
		t.Fatalf("rate=0.1,ignore-shutdown=0.25: %#v, %v", f, err)
	}
	f, err = localcloud.ParseFaults("unavailable=cx23@fsn1, rate=0.1, unavailable=cx33@nbg1")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.Rate != 0.1 || !slices.Equal(rf.Unavailable, []string{"cx23@fsn1", "cx33@nbg1"}) {
		t.Fatalf("unavailable pairs with a rate: %#v, %v", f, err)
	}
	f, err = localcloud.ParseFaults("unavailable=cx23@fsn1")
	if rf, ok := f.(*localcloud.RandomFaults); err != nil || !ok || rf.Rate != 0 || !rf.SoldOut("cx23", "fsn1") || rf.SoldOut("cx23", "nbg1") {
		t.Fatalf("an unavailable pair alone: %#v, %v", f, err)
	}
	for spec, want := range map[string]string{
		"ignore-shutdown=2":      "between 0 and 1",
		"unavailable=cx23":       "is not TYPE@LOCATION with a server type of the local cloud (cx23, cx33",
		"unavailable=cx99@fsn1":  "is not TYPE@LOCATION",
		"unavailable=cx23@mars1": "names no location of the local cloud (fsn1, nbg1, hel1)",
		"rate=1.5":               "between 0 and 1",
		"rate=x":                 "rate=x",
		"rate=0.1,seed=abc":      "seed=abc",
		"rate=0.1,slow=-1s":      "must be positive",
		"rate=0.1,color=red":     `unknown key "color"`,
		"seed=4":                 "names no rate, ignore-shutdown nor unavailable pair",
		"rate":                   "is not key=value",
	} {
		if _, err := localcloud.ParseFaults(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFaults(%q) = %v, want an error saying %q", spec, err, want)
		}
	}
}

// validatedCloud starts a local cloud with faults whose answers a
// validator checks against the API description, and a client of it.
func validatedCloud(t *testing.T, port int, faults localcloud.Faults) (*validator, *hc.Client) {
	t.Helper()
	cloud, err := localcloud.Start(localcloud.Options{DataDir: t.TempDir(), SSHPort: port, ActionDuration: 10 * time.Millisecond, Faults: faults, Logger: testkit.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	v := newValidator(t, cloud.Handler())
	ts := httptest.NewServer(v)
	t.Cleanup(ts.Close)
	return v, rawClient(ts.URL+"/v1", cloud.Token())
}

// TestSoldOutPair: a create of a sold-out pair gets Hetzner's answer,
// 412 resource_unavailable, as the API description allows; the same type
// elsewhere is created.
func TestSoldOutPair(t *testing.T) {
	port := testkit.FreePort(t)
	v, raw := validatedCloud(t, port, &localcloud.RandomFaults{Unavailable: []string{"cx23@fsn1"}})
	ctx := testkit.Context(t, 10*time.Second)
	spec, _ := newSpec(t, "soldout1", port)
	opts := hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData,
		Location: &hc.Location{Name: "fsn1"},
	}
	_, _, err := raw.Server.Create(ctx, opts)
	if !hc.IsError(err, hc.ErrorCodeResourceUnavailable) {
		t.Fatalf("create in a sold-out location: %v, want resource_unavailable", err)
	}
	if list, _ := raw.Server.All(ctx); len(list) != 0 {
		t.Fatalf("a refused create left servers %v", list)
	}
	st, _, err := raw.ServerType.GetByName(ctx, "cx23")
	if err != nil || len(st.Locations) != 3 || st.Locations[0].Available || !st.Locations[1].Available {
		t.Fatalf("cx23 is offered as %+v (%v); want it sold out in fsn1 only", st.Locations, err)
	}
	opts.Location = &hc.Location{Name: "nbg1"}
	res, _, err := raw.Server.Create(ctx, opts)
	if err != nil || res.Server.Location.Name != "nbg1" {
		t.Fatalf("create in another location: %+v, %v", res.Server, err)
	}
	v.report(t, []string{"POST /servers 412", "POST /servers 201", "GET /server_types 200"})
}

// failActions lets requests through and fails every action.
type failActions struct{}

func (failActions) Request(http.ResponseWriter, *http.Request) bool { return false }
func (failActions) Action(string) localcloud.ActionFault {
	return localcloud.ActionFault{Code: "action_failed", Message: "injected"}
}

// TestFaultAnswersMatchOpenAPI checks what injected faults look like
// against Hetzner's API description: error answers and failed actions.
func TestFaultAnswersMatchOpenAPI(t *testing.T) {
	port := testkit.FreePort(t)
	v, raw := validatedCloud(t, port, &localcloud.RandomFaults{Rate: 1, Seed: 3})
	ctx := testkit.Context(t, 10*time.Second)
	for range 60 {
		_, _ = raw.Server.All(ctx)
		_, _, _ = raw.Server.Poweron(ctx, &hc.Server{ID: 1})
	}
	v.report(t, []string{
		"GET /servers 503", "GET /servers 500", "GET /servers 429",
		"POST /servers/{id}/actions/poweron 503", "POST /servers/{id}/actions/poweron 500",
		"POST /servers/{id}/actions/poweron 429", "POST /servers/{id}/actions/poweron 423",
		"POST /servers/{id}/actions/poweron 409",
	})

	// A failed action, as the API reports it.
	failing, err := localcloud.Start(localcloud.Options{DataDir: t.TempDir(), SSHPort: port, ActionDuration: 10 * time.Millisecond, Faults: failActions{}, Logger: testkit.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer failing.Close()
	v = newValidator(t, failing.Handler())
	ts2 := httptest.NewServer(v)
	defer ts2.Close()
	raw = rawClient(ts2.URL+"/v1", failing.Token())
	spec, _ := newSpec(t, "fail1", port)
	res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, res.Action); err == nil {
		t.Fatal("the failed create action reported success")
	}
	a, _, err := raw.Action.GetByID(ctx, res.Action.ID)
	if err != nil || a.Status != hc.ActionStatusError || a.ErrorCode != "action_failed" {
		t.Fatalf("failed action: %+v, %v", a, err)
	}
	_ = raw.Action.WaitFor(ctx, res.NextActions...) // they fail too
	s, _, err := raw.Server.GetByID(ctx, res.Server.ID)
	if err != nil {
		t.Fatal(err)
	}
	cr, _, err := raw.Server.CreateImage(ctx, s, nil)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := raw.Action.WaitFor(ctx, cr.Action); err == nil {
		t.Fatal("the failed snapshot reported success")
	}
	if im, _, err := raw.Image.GetByID(ctx, cr.Image.ID); err != nil || im != nil {
		t.Fatalf("a failed snapshot is still listed: %+v, %v", im, err)
	}
	v.report(t, []string{"POST /servers 201", "GET /actions 200", "GET /actions/{id} 200", "POST /servers/{id}/actions/create_image 201", "GET /images/{id} 404"})
}
