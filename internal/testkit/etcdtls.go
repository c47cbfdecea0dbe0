package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// EtcdTLS names the PEM files a client of a TLS cluster needs: the
// cluster's certificate authority, and a client certificate it signed with
// its key.
type EtcdTLS struct{ CA, Cert, Key string }

// StartEtcdTLS starts a cluster as StartEtcd does whose members serve
// clients over TLS only (https client URLs, a server certificate for
// 127.0.0.1) and require a client certificate their own CA signed, as a
// production cluster should. Peers talk plain HTTP on loopback.
func StartEtcdTLS(t testing.TB, members int) (*Etcd, EtcdTLS) {
	t.Helper()
	pki := newEtcdPKI(t, t.TempDir())
	return startEtcd(t, members, pki), pki.files
}

// etcdPKI is a test cluster's certificate authority and what it signed.
type etcdPKI struct {
	files                 EtcdTLS
	serverCert, serverKey string
	client                *tls.Config // for health checks
}

// newEtcdPKI makes a CA and, signed by it, a server certificate for
// 127.0.0.1 and a client certificate, as PEM files in dir.
func newEtcdPKI(t testing.TB, dir string) *etcdPKI {
	t.Helper()
	now := time.Now()
	caKey := newECKey(t)
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cc-gateway test etcd CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certPath, keyPath string, pair tls.Certificate) {
		key := newECKey(t)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
		certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certPath, certPEM)
		writePEM(t, keyPath, keyPEM)
		if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath, pair
	}
	p := &etcdPKI{files: EtcdTLS{CA: filepath.Join(dir, "ca.pem")}}
	writePEM(t, p.files.CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	p.serverCert, p.serverKey, _ = sign("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	var clientPair tls.Certificate
	p.files.Cert, p.files.Key, clientPair = sign("client", 3, x509.ExtKeyUsageClientAuth, nil)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	p.client = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientPair}, MinVersion: tls.VersionTLS12}
	return p
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
