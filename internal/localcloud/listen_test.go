package localcloud_test

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// The API listens where it is told, on loopback only: its machines are
// shells as this OS user.
func TestListen(t *testing.T) {
	port := testkit.FreePort(t)
	c, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1"; c.Endpoint() != want {
		t.Errorf("endpoint %s, want %s", c.Endpoint(), want)
	}

	for _, addr := range []string{"0.0.0.0:0", ":8080", "192.0.2.1:8080", "example.com:80", "127.0.0.1"} {
		dir := t.TempDir()
		_, err := localcloud.Start(localcloud.Options{DataDir: dir, Listen: addr, Logger: testkit.Log(t)})
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(addr)) {
			t.Errorf("listen on %q: %v, want a refusal naming it", addr, err)
		}
	}
}
