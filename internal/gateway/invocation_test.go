package gateway

import (
	"os"
	"testing"
)

func TestInvocation(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ public, listen, want string }{
		{"cc.example.com", "127.0.0.1:2222", "ssh cc.example.com"},
		{"", "127.0.0.1:2222", "ssh -p 2222 localhost"},
		{"", "[::1]:22", "ssh localhost"},
		{"", ":22", "ssh " + host},
		{"", "0.0.0.0:2200", "ssh -p 2200 " + host},
		{"", "203.0.113.7:22", "ssh 203.0.113.7"},
		{"", "not an address", "ssh GATEWAY"},
	} {
		if got := Invocation(tc.public, tc.listen); got != tc.want {
			t.Errorf("Invocation(%q, %q) = %q, want %q", tc.public, tc.listen, got, tc.want)
		}
	}
}
