package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSConfig builds the client TLS of the store from PEM files: ca (empty:
// the system's roots) and a client certificate and key (both empty: none).
// It reads them at once, so a gateway with a bad file stops at start with
// the file named.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		raw, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("etcd CA %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate %s and key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsProblem looks for why TLS to the cluster fails, for an Open that got
// no answer: etcd's client reports a failed handshake only as a timeout.
// It tries each https endpoint once, bounded by timeout, and returns the
// first handshake error (an unknown authority, a certificate the members
// refuse) as a sentence naming the option to check; nil when TLS works or
// nothing answered at all.
func tlsProblem(endpoints []string, cfg *tls.Config, timeout time.Duration) error {
	for _, endpoint := range endpoints {
		u, err := url.Parse(endpoint)
		if err != nil || u.Scheme != "https" {
			continue
		}
		conn, err := net.DialTimeout("tcp", u.Host, timeout)
		if err != nil {
			continue
		}
		c := cfg.Clone()
		c.ServerName = u.Hostname()
		c.NextProtos = []string{"h2"}
		client := tls.Client(conn, c)
		client.SetDeadline(time.Now().Add(timeout))
		err = client.Handshake()
		if err == nil {
			// A member refuses a missing or unknown client certificate
			// only after the handshake (TLS 1.3): on the first read. One
			// that accepts it waits for the client to speak: a timeout.
			client.SetReadDeadline(time.Now().Add(min(timeout, time.Second)))
			_, err = client.Read(make([]byte, 1))
			var timedOut net.Error
			if errors.As(err, &timedOut) && timedOut.Timeout() {
				err = nil
			}
		}
		client.Close()
		var unknown x509.UnknownAuthorityError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &unknown):
			return fmt.Errorf("etcd at %s presents a certificate that --etcd-ca does not vouch for (%v)", endpoint, err)
		case strings.Contains(err.Error(), "remote error"):
			return fmt.Errorf("etcd at %s refuses this gateway's client certificate; check --etcd-cert and --etcd-key (%v)", endpoint, err)
		default:
			return fmt.Errorf("TLS with etcd at %s fails: %v", endpoint, err)
		}
	}
	return nil
}
