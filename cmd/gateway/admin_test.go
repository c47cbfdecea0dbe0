package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	root := newPerson(t, filepath.Join(dir, "root"))
	judy := newPerson(t, filepath.Join(dir, "judy"))
	admins := filepath.Join(dir, "admins")
	if err := os.WriteFile(admins, []byte(root.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGatewayIn(t, dir, "--admins", admins)
	g := lg.start(t)
	if r := judy.ssh(g, lg.hostKeys, "", "true"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	st := judy.status(g, lg)

	r := root.ssh(g, lg.hostKeys, "", "admin", "list")
	if r.code != 0 || !strings.Contains(r.stdout, st.Name) || !strings.Contains(r.stdout, "running") || !strings.Contains(r.stdout, "1 leases") {
		t.Errorf("admin list: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = root.ssh(g, lg.hostKeys, "", "admin", "events")
	for _, kind := range []string{"connect", "create"} {
		if r.code != 0 || !strings.Contains(r.stdout, kind) {
			t.Errorf("admin events lacks %q: code %d\n%s", kind, r.code, r.stdout)
		}
	}
	if r := judy.ssh(g, lg.hostKeys, "", "admin", "list"); r.code != 1 || !strings.Contains(r.stderr, "admin list") {
		t.Errorf("admin list by a non-admin: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := judy.ssh(g, lg.hostKeys, "", "help"); strings.Contains(r.stdout, "admin") {
		t.Errorf("help shows admin commands to a non-admin:\n%s", r.stdout)
	}
	if r := root.ssh(g, lg.hostKeys, "", "help"); !strings.Contains(r.stdout, "admin") {
		t.Errorf("help hides admin commands from an admin:\n%s", r.stdout)
	}

	if r := root.ssh(g, lg.hostKeys, "", "admin", "stop", st.Name); r.code != 0 {
		t.Fatalf("admin stop: %+v", r)
	}
	if s := judy.status(g, lg); s.State != "stopped" {
		t.Errorf("after admin stop: %s", s.State)
	}
	if r := root.ssh(g, lg.hostKeys, "", "admin", "extend", st.LeaseID, "1h"); r.code != 0 {
		t.Errorf("admin extend: %+v", r)
	}
	if r := root.ssh(g, lg.hostKeys, "", "admin", "destroy", "cc-nobody"); r.code != 1 || !strings.Contains(r.stderr, "no lease") {
		t.Errorf("admin destroy of an unknown lease: %+v", r)
	}
	if r := root.ssh(g, lg.hostKeys, "", "admin", "frobnicate"); r.code != 1 || !strings.Contains(r.stderr, "usage") {
		t.Errorf("unknown admin subcommand: %+v", r)
	}
}
