// Package testkit is what the tests of several packages share: keys in
// every form they need, a manual clock, a log buffer that concurrent writers
// can share, and the ssh_config and known_hosts files that point the real
// OpenSSH client at a gateway and its machines. Only tests import it, and it
// imports nothing of the project's, so any package's own tests can use it.
package testkit
