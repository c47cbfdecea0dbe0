package localcloudtest_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestStart: the provider reaches the cloud's API, and the cloud's machines
// will listen on the port it names, which is free.
func TestStart(t *testing.T) {
	c := localcloudtest.Start(t, localcloud.KindBuiltin)
	if c.Provider == nil || c.Cloud == nil || c.DataDir == "" {
		t.Fatalf("Start = %+v, want a cloud, a provider and a folder", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	servers, err := c.Provider.List(ctx)
	if err != nil {
		t.Fatalf("the provider cannot list the cloud's servers: %v", err)
	}
	if len(servers) != 0 {
		t.Errorf("a new cloud has servers: %v", servers)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.SSHPort)))
	if err != nil {
		t.Fatalf("SSHPort %d is not free: %v", c.SSHPort, err)
	}
	l.Close()
}

// TestStartClosesAtTheEnd: once the test that started it ends, the cloud's
// API no longer answers.
func TestStartClosesAtTheEnd(t *testing.T) {
	var endpoint string
	t.Run("user", func(t *testing.T) {
		endpoint = localcloudtest.Start(t, localcloud.KindBuiltin).Endpoint()
	})
	client := &http.Client{Timeout: 10 * time.Second}
	if resp, err := client.Get(endpoint + "/servers"); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s/servers after the test ended: %s, want no answer", endpoint, resp.Status)
	}
}

// TestSpec: the spec names the server for its lease, carries a document the
// machine accepts that authorizes the person for the user, and pins the
// document's host key.
func TestSpec(t *testing.T) {
	person := testkit.NewKey(t)
	spec, hostKey := localcloudtest.Spec(t, "spec1", "claude", 2200, person.Public())
	if spec.Name != "cc-spec1" || spec.LeaseID != "spec1" || spec.PublicKey != person.AuthorizedKey() {
		t.Errorf("spec = %+v", spec)
	}
	doc, err := bootstrap.Parse([]byte(spec.UserData))
	if err != nil {
		t.Fatal(err)
	}
	if doc.User != "claude" || doc.SSHPort != 2200 || len(doc.AuthorizedKeys) != 1 || doc.AuthorizedKeys[0] != person.AuthorizedKey() {
		t.Errorf("document = %+v", doc)
	}
	if doc.HostKey.Public != hostKey {
		t.Errorf("pinned host key %q, the document's is %q", hostKey, doc.HostKey.Public)
	}
}
