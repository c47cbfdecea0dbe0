package localcloud_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func cidr(t *testing.T, s string) net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return *n
}

func sshRule(t *testing.T, sources ...string) hc.FirewallRule {
	t.Helper()
	port := "22"
	var ips []net.IPNet
	for _, s := range sources {
		ips = append(ips, cidr(t, s))
	}
	return hc.FirewallRule{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolTCP, Port: &port, SourceIPs: ips}
}

// serverFirewalls is what the server's answer says guards it.
func serverFirewalls(ctx context.Context, t *testing.T, raw *hc.Client, id int64) map[int64]hc.FirewallStatus {
	t.Helper()
	s, _, err := raw.Server.GetByID(ctx, id)
	if err != nil || s == nil {
		t.Fatalf("get server %d: %v", id, err)
	}
	got := map[int64]hc.FirewallStatus{}
	for _, f := range s.PublicNet.Firewalls {
		got[f.Firewall.ID] = f.Status
	}
	return got
}

// TestFirewallsMatchOpenAPI drives every firewall endpoint of the fake,
// with the answers Hetzner gives to bad requests, through hcloud-go, and
// checks each answer against the API description.
func TestFirewallsMatchOpenAPI(t *testing.T) {
	port := testkit.FreePort(t)
	dir := t.TempDir()
	cloud := startCloud(t, dir, port)
	v := newValidator(t, cloud.Handler())
	ts := httptest.NewServer(v)
	defer ts.Close()
	raw := rawClient(ts.URL+"/v1", cloud.Token())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res, _, err := raw.Firewall.Create(ctx, hc.FirewallCreateOpts{
		Name: "fw-a", Labels: map[string]string{"cc-gateway": "a"},
		Rules: []hc.FirewallRule{sshRule(t, "192.0.2.0/24", "2001:db8::/32"), {Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolICMP, SourceIPs: []net.IPNet{cidr(t, "0.0.0.0/0")}}},
	})
	if err != nil {
		t.Fatalf("create firewall: %v", err)
	}
	fw := res.Firewall
	if len(fw.Rules) != 2 || fw.Rules[0].SourceIPs[1].String() != "2001:db8::/32" {
		t.Fatalf("created rules %+v", fw.Rules)
	}
	other, _, err := raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "fw-b", Labels: map[string]string{"cc-gateway": "b"}})
	if err != nil {
		t.Fatal(err)
	}

	// A server created with the firewall carries it, pending while it is
	// made and applied after.
	spec, _ := newSpec(t, "fw1", port)
	created, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		UserData: spec.UserData, Labels: map[string]string{"cc-gateway": "a"},
		Firewalls: []*hc.ServerCreateFirewall{{Firewall: hc.Firewall{ID: fw.ID}}},
	})
	if err != nil {
		t.Fatalf("create server with firewall: %v", err)
	}
	srv := created.Server
	if len(srv.PublicNet.Firewalls) != 1 || srv.PublicNet.Firewalls[0].Status != hc.FirewallStatusPending {
		t.Errorf("new server's firewalls %+v, want firewall %d pending", srv.PublicNet.Firewalls, fw.ID)
	}
	if err := raw.Action.WaitFor(ctx, append([]*hc.Action{created.Action}, created.NextActions...)...); err != nil {
		t.Fatal(err)
	}
	if got := serverFirewalls(ctx, t, raw, srv.ID); got[fw.ID] != hc.FirewallStatusApplied || len(got) != 1 {
		t.Errorf("server's firewalls %v, want %d applied", got, fw.ID)
	}

	// Lists filter by label and name.
	list, err := raw.Firewall.AllWithOpts(ctx, hc.FirewallListOpts{ListOpts: hc.ListOpts{LabelSelector: "cc-gateway=a"}})
	if err != nil || len(list) != 1 || list[0].ID != fw.ID || len(list[0].AppliedTo) != 1 || list[0].AppliedTo[0].Server.ID != srv.ID {
		t.Fatalf("list by label: %v %+v", err, list)
	}
	if byName, _, err := raw.Firewall.GetByName(ctx, "fw-b"); err != nil || byName == nil || byName.ID != other.Firewall.ID {
		t.Fatalf("get by name: %v %+v", err, byName)
	}
	if _, _, err := raw.Firewall.Update(ctx, other.Firewall, hc.FirewallUpdateOpts{Labels: map[string]string{"cc-gateway": "c"}}); err != nil {
		t.Fatalf("update labels: %v", err)
	}

	// Rules are replaced whole; the action is the firewall's.
	actions, _, err := raw.Firewall.SetRules(ctx, fw, hc.FirewallSetRulesOpts{Rules: []hc.FirewallRule{sshRule(t, "0.0.0.0/0")}})
	if err != nil {
		t.Fatalf("set rules: %v", err)
	}
	if err := raw.Action.WaitFor(ctx, actions...); err != nil {
		t.Fatal(err)
	}
	got, _, err := raw.Firewall.GetByID(ctx, fw.ID)
	if err != nil || len(got.Rules) != 1 || got.Rules[0].SourceIPs[0].String() != "0.0.0.0/0" {
		t.Fatalf("rules after set_rules: %v %+v", err, got)
	}

	// Removing takes the firewall off once the action ends; applying puts
	// it back; deleting is refused while it is applied.
	actions, _, err = raw.Firewall.RemoveResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatalf("remove from server: %v", err)
	}
	if err := raw.Action.WaitFor(ctx, actions...); err != nil {
		t.Fatal(err)
	}
	if got := serverFirewalls(ctx, t, raw, srv.ID); len(got) != 0 {
		t.Errorf("after remove_from_resources the server shows firewalls %v", got)
	}
	actions, _, err = raw.Firewall.ApplyResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatalf("apply to server: %v", err)
	}
	if err := raw.Action.WaitFor(ctx, actions...); err != nil {
		t.Fatal(err)
	}
	if got := serverFirewalls(ctx, t, raw, srv.ID); got[fw.ID] != hc.FirewallStatusApplied {
		t.Errorf("after apply_to_resources the server shows %v", got)
	}
	if _, err := raw.Firewall.Delete(ctx, fw); !hc.IsError(err, hc.ErrorCodeResourceInUse) {
		t.Errorf("delete applied firewall: %v, want resource_in_use", err)
	}
	if _, _, err := raw.Firewall.ApplyResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}}); !hc.IsError(err, hc.ErrorCodeFirewallAlreadyApplied) {
		t.Errorf("apply twice: %v, want firewall_already_applied", err)
	}
	if _, _, err := raw.Firewall.RemoveResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: 99999}}}); !hc.IsError(err, hc.ErrorCodeFirewallResourceNotFound) {
		t.Errorf("remove from a missing server: %v, want firewall_resource_not_found", err)
	}
	if _, _, err := raw.Firewall.RemoveResources(ctx, other.Firewall, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}}); !hc.IsError(err, hc.ErrorCodeFirewallResourceNotFound) {
		t.Errorf("remove from a server it is not applied to: %v, want firewall_resource_not_found", err)
	}

	// Bad rules get Hetzner's invalid_input, naming the rule.
	noPort := sshRule(t, "10.0.0.0/8")
	noPort.Port = nil
	hostBits := sshRule(t, "10.0.0.0/8")
	hostBits.SourceIPs[0].IP = net.ParseIP("10.1.2.3").To4()
	outWithSources := sshRule(t, "10.0.0.0/8")
	outWithSources.Direction = hc.FirewallRuleDirectionOut
	badPort := sshRule(t, "10.0.0.0/8")
	p := "70000"
	badPort.Port = &p
	icmpPort := hc.FirewallRule{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolICMP, Port: &p, SourceIPs: []net.IPNet{cidr(t, "0.0.0.0/0")}}
	for name, rule := range map[string]hc.FirewallRule{"no port for tcp": noPort, "host bits": hostBits, "out with sources": outWithSources, "port out of range": badPort, "port for icmp": icmpPort} {
		if _, _, err := raw.Firewall.SetRules(ctx, fw, hc.FirewallSetRulesOpts{Rules: []hc.FirewallRule{rule}}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
			t.Errorf("%s: %v, want invalid_input", name, err)
		}
	}
	if _, _, err := raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "fw-bad", Rules: []hc.FirewallRule{noPort}}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("create with a bad rule: %v, want invalid_input", err)
	}
	if _, _, err := raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "fw-a"}); !hc.IsError(err, hc.ErrorCodeUniquenessError) {
		t.Errorf("create with a taken name: %v, want uniqueness_error", err)
	}
	if _, _, err := raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "fw-c", ApplyTo: []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: 99999}}}}); !hc.IsError(err, hc.ErrorCodeFirewallResourceNotFound) {
		t.Errorf("create applied to a missing server: %v, want firewall_resource_not_found", err)
	}
	if f, _, err := raw.Firewall.GetByID(ctx, 99999); err != nil || f != nil {
		t.Errorf("missing firewall: %v %v", f, err)
	}
	if _, err := raw.Firewall.Delete(ctx, other.Firewall); err != nil {
		t.Fatalf("delete unapplied firewall: %v", err)
	}

	// A firewall's own actions; hcloud-go reads one at /firewalls/actions/{id}
	// (not served: it clashes with /firewalls/{id}/actions in the fake's
	// router), so the one under the firewall is fetched by hand.
	if _, err := raw.Firewall.Action.AllFor(ctx, fw, hc.ActionListOpts{}); err != nil {
		t.Fatalf("firewall actions: %v", err)
	}
	one, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/firewalls/%d/actions/%d", ts.URL, fw.ID, actions[0].ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	one.Header.Set("Authorization", "Bearer "+cloud.Token())
	if resp, err := http.DefaultClient.Do(one); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get a firewall's action: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// State persists: the firewall and what it guards survive a restart.
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}
	again := startCloud(t, dir, port)
	raw2 := rawClient(again.Endpoint(), again.Token())
	if got := serverFirewalls(ctx, t, raw2, srv.ID); got[fw.ID] != hc.FirewallStatusApplied {
		t.Errorf("after a restart the server shows %v", got)
	}
	if f, _, err := raw2.Firewall.GetByID(ctx, fw.ID); err != nil || f == nil || len(f.Rules) != 1 {
		t.Errorf("after a restart the firewall is %+v (%v)", f, err)
	}
	// Deleting the server frees the firewall.
	deleted, _, err := raw2.Server.DeleteWithResult(ctx, &hc.Server{ID: srv.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw2.Action.WaitFor(ctx, deleted.Action); err != nil {
		t.Fatal(err)
	}
	if _, err := raw2.Firewall.Delete(ctx, fw); err != nil {
		t.Errorf("delete the firewall of a deleted server: %v", err)
	}

	v.report(t, []string{
		"POST /firewalls 201",
		"POST /firewalls 400",
		"POST /firewalls 409",
		"POST /firewalls 422",
		"GET /firewalls 200",
		"GET /firewalls/{id} 200",
		"GET /firewalls/{id} 404",
		"PUT /firewalls/{id} 200",
		"DELETE /firewalls/{id} 204",
		"DELETE /firewalls/{id} 422",
		"GET /firewalls/{id}/actions 200",
		"POST /firewalls/{id}/actions/set_rules 201",
		"POST /firewalls/{id}/actions/set_rules 400",
		"POST /firewalls/{id}/actions/apply_to_resources 201",
		"POST /firewalls/{id}/actions/apply_to_resources 422",
		"POST /firewalls/{id}/actions/remove_from_resources 201",
		"POST /firewalls/{id}/actions/remove_from_resources 404",
		"GET /firewalls/{id}/actions/{action_id} 200",
		"POST /servers 201",
		"GET /servers/{id} 200",
	})
}
