package testkit

import (
	"os"
	"testing"
)

// RequireSSHD skips the test unless OpenSSH's server is installed where
// tests that drive a real sshd find it.
func RequireSSHD(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH server not installed in /usr/sbin (Debian: openssh-server)")
	}
}
