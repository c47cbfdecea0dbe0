package etcd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// Two gateways (two stores on one prefix) appending at once take distinct
// sequences: every event is kept once, and the bound holds.
func TestTwoGatewaysAppend(t *testing.T) {
	cluster := testkit.StartEtcd(t, 1)
	const perWriter, writers, limit = 5, 4, 100
	stores := make([]*Store, 2)
	for i := range stores {
		s, err := Open(Config{Endpoints: cluster.Endpoints(), Prefix: "/two/"})
		if err != nil {
			t.Fatal(err)
		}
		s.eventLimit = limit
		defer s.Close()
		stores[i] = s
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				errs <- stores[w%2].AppendEvent(lease.Event{Kind: "connect", Detail: fmt.Sprintf("w%d-%d", w, i)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("AppendEvent: %v", err)
		}
	}
	events, err := stores[0].Events(0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Detail)
	}
	sort.Strings(got)
	var want []string
	for w := range writers {
		for i := range perWriter {
			want = append(want, fmt.Sprintf("w%d-%d", w, i))
		}
	}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events of two gateways appending at once:\n got %v\nwant %v", got, want)
	}
}

// A prefix that holds keys but no schema version is not a gateway's, and
// one written by a newer gateway is refused; neither is written to.
func TestOpenRefusesForeignAndNewerPrefixes(t *testing.T) {
	cluster := testkit.StartEtcd(t, 1)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := testkit.Context(t, time.Minute)
	for key, value := range map[string]string{"/foreign/app/config": "x", "/newer/" + schemaVersionKey: "2"} {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string]string{
		"/foreign/": "the prefix holds 1 keys but no meta/schema_version: it is not a gateway's; choose another --etcd-prefix",
		"/newer/":   "written by a newer gateway (schema version 2; this gateway knows up to 1)",
	} {
		_, err := Open(Config{Endpoints: cluster.Endpoints(), Prefix: prefix})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open under %s: %v, want %q", prefix, err, want)
		}
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 1 {
			t.Errorf("under %s after a refused open: %v keys (%v), want the 1 there was", prefix, resp.Count, err)
		}
	}
}

// Bad TLS files stop the start naming the file.
func TestTLSConfigNamesBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, dir, "a")
	writeCert(t, dir, "b")
	otherKey := filepath.Join(dir, "b-key.pem")
	for name, tc := range map[string]struct {
		ca, cert, key, want string
	}{
		"CA without PEM":     {ca: notPEM, want: "etcd CA " + notPEM + " holds no PEM certificate"},
		"missing CA":         {ca: filepath.Join(dir, "missing.pem"), want: "no such file"},
		"key of another":     {cert: cert, key: otherKey, want: "etcd client certificate " + cert + " and key " + otherKey},
		"certificate no key": {cert: cert, want: "etcd client certificate " + cert},
	} {
		if _, err := TLSConfig(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if cfg, err := TLSConfig("", cert, filepath.Join(dir, "a-key.pem")); err != nil || len(cfg.Certificates) != 1 {
		t.Errorf("a matching certificate and key: %v", err)
	}
}

// writeCert writes a self-signed certificate and its key as dir/name.pem
// and dir/name-key.pem, and returns the certificate's path.
func writeCert(t *testing.T, dir, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	rawKey, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, name+".pem")
	for path, block := range map[string]*pem.Block{
		certPath:                            {Type: "CERTIFICATE", Bytes: der},
		filepath.Join(dir, name+"-key.pem"): {Type: "EC PRIVATE KEY", Bytes: rawKey},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath
}
