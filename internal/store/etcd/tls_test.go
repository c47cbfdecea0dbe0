package etcd

import (
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestTLS runs the store on a real cluster that serves clients over TLS
// only and requires client certificates: with the CA, certificate and key
// the gateway is given, a lease goes in and comes back; without the client
// certificate, or trusting another CA, Open fails saying which, and which
// option to check (etcd's client alone reports only a timeout).
func TestTLS(t *testing.T) {
	cluster, files := testkit.StartEtcdTLS(t, 1)
	open := func(ca, cert, key string) (*Store, error) {
		cfg, err := TLSConfig(ca, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return Open(Config{Endpoints: cluster.Endpoints(), Prefix: "/tls/", TLS: cfg, Timeout: 3 * time.Second})
	}

	s, err := open(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatalf("open with the CA and a client certificate: %v", err)
	}
	defer s.Close()
	want := lease.Lease{Fingerprint: "SHA256:tls", ID: "tls1", State: lease.StateRunning}
	if err := s.Put(want); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(want.Fingerprint); err != nil || got.ID != want.ID {
		t.Fatalf("get over TLS: %+v, %v", got, err)
	}

	_, other := testkit.StartEtcdTLS(t, 1)
	for name, tc := range map[string][4]string{
		"no client certificate": {files.CA, "", "", "refuses this gateway's client certificate; check --etcd-cert and --etcd-key"},
		"another CA":            {other.CA, files.Cert, files.Key, "presents a certificate that --etcd-ca does not vouch for"},
	} {
		s, err := open(tc[0], tc[1], tc[2])
		if err == nil {
			s.Close()
			t.Errorf("%s: open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "open etcd store") || !strings.Contains(err.Error(), tc[3]) {
			t.Errorf("%s: %v, want an error naming the store and saying %q", name, err, tc[3])
		}
	}
}
