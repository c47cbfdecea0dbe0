package localcloud_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestServerHasNoDatacenter: Hetzner removed the datacenter from server
// answers in July 2026; the fake leaves it out too, and hcloud-go still
// knows where the server is, from its location.
func TestServerHasNoDatacenter(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	port := testkit.FreePort(t)
	cloud := startCloud(t, t.TempDir(), port)
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	created := createRunning(ctx, t, raw, "dc1", port)

	r := httptest.NewRequest(http.MethodGet, "/v1/servers/"+strconv.FormatInt(created.ID, 10), nil)
	r.Header.Set("Authorization", "Bearer "+cloud.Token())
	w := httptest.NewRecorder()
	cloud.Handler().ServeHTTP(w, r)
	var body struct {
		Server map[string]json.RawMessage `json:"server"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Server == nil {
		t.Fatalf("server answer %s: %v", w.Body.String(), err)
	}
	if dc, ok := body.Server["datacenter"]; ok {
		t.Errorf("the server answer carries a datacenter: %s", dc)
	}

	s, _, err := raw.Server.GetByID(ctx, created.ID)
	if err != nil || s == nil || s.Location == nil || s.Location.Name != "nbg1" {
		t.Fatalf("hcloud-go reads the server as %+v, %v; want location nbg1", s, err)
	}
}
