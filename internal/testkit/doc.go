// Package testkit is what the tests of several packages share: keys in
// every form they need, a manual clock, log buffers a test can wait on and
// loggers for the code under test, the ssh_config and known_hosts files that
// point the real OpenSSH client at a gateway and its machines, free loopback
// ports, a loopback echo server, bounded contexts, polling for state that
// nothing signals, a real Prometheus server to scrape and query, and a real
// etcd cluster (StartEtcd) whose members a test can kill and restart. Only tests import it, and it imports nothing of the
// project's, so any package's own tests can use it (the lease package's
// in-package tests do).
//
// A lease's create spec needs the bootstrap and lease packages, so it lives
// beside the local cloud fixture: localcloudtest.Spec.
package testkit
