package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cc-gateway/cc-gateway/internal/config"
	"github.com/cc-gateway/cc-gateway/internal/gateway"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/store/etcd"
)

// leaseStore is what the gateway asks of its lease store, whichever keeps
// it: bbolt in --data-dir, or etcd with --etcd-endpoints.
type leaseStore interface {
	lease.Store
	lease.PoolStore
	// Healthy is a /readyz check: nil while the store works.
	Healthy() error
	Close() error
}

// openedStore is a lease store that `gateway store` can also export and
// import.
type openedStore interface {
	leaseStore
	dumpable
}

// openStore opens the store the options name.
func openStore(cfg config.Config) (openedStore, error) {
	if !cfg.Etcd() {
		s, err := bolt.Open(cfg.StorePath())
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	var tlsConfig *tls.Config
	if cfg.EtcdCA != "" || cfg.EtcdCert != "" || hasHTTPS(cfg.EtcdEndpointList()) {
		var err error
		if tlsConfig, err = etcd.TLSConfig(cfg.EtcdCA, cfg.EtcdCert, cfg.EtcdKey); err != nil {
			return nil, err
		}
	}
	s, err := etcd.Open(etcd.Config{Endpoints: cfg.EtcdEndpointList(), Prefix: cfg.EtcdPrefix, TLS: tlsConfig})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// coordinator is how this gateway works with the others on its store:
// through etcd, or, with bbolt, alone. name tells operators reading the
// election's keys which gateway leads.
func coordinator(cfg config.Config, s leaseStore, name string) lease.Coordinator {
	if es, ok := s.(*etcd.Store); ok {
		return es.Coordinator(cfg.LeaderTTL, name)
	}
	return lease.SoleGateway{}
}

func hasHTTPS(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "https://") {
			return true
		}
	}
	return false
}

// storeName names the store in the operator's messages.
func storeName(cfg config.Config) string {
	if cfg.Etcd() {
		return fmt.Sprintf("etcd %s under %s", cfg.EtcdEndpoints, cfg.EtcdPrefix)
	}
	return cfg.StorePath()
}

// gatewayName names this gateway process among those sharing a store.
func gatewayName(cfg config.Config) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown host"
	}
	return fmt.Sprintf("%s pid %d (--listen %s)", host, os.Getpid(), cfg.Listen)
}

// sharedWith returns what the gateway shares with the other gateways on
// an etcd store, and the presence that keeps it up; nil for bbolt, which
// serves one gateway.
func sharedWith(store leaseStore, log *slog.Logger) (gateway.Shared, *etcd.Presence) {
	s, ok := store.(*etcd.Store)
	if !ok {
		return nil, nil
	}
	p := s.Presence(log)
	return p, p
}
