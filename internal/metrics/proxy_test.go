package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

func TestProxyObserver(t *testing.T) {
	p := New().Proxy()
	p.Carried(proxy.ToMachine, 5)
	p.Carried(proxy.ToMachine, 64<<10)
	p.Carried(proxy.FromMachine, 7)
	if got := testutil.ToFloat64(p.bytes[proxy.ToMachine]); got != 5+64<<10 {
		t.Errorf("to_machine bytes = %v, want %d", got, 5+64<<10)
	}
	if got := testutil.ToFloat64(p.bytes[proxy.FromMachine]); got != 7 {
		t.Errorf("from_machine bytes = %v, want 7", got)
	}

	for _, kind := range []string{"session", "session", "auth-agent@openssh.com", "x11", "direct-tcpip"} {
		p.ChannelOpened(kind)
	}
	p.ChannelClosed("session")
	p.ChannelClosed("direct-tcpip")
	for label, want := range map[string]float64{"session": 1, "auth-agent": 1, "other": 1, "direct-tcpip": 0, "forwarded-tcpip": 0} {
		if got := testutil.ToFloat64(p.channels[label]); got != want {
			t.Errorf("channels{type=%q} = %v, want %v", label, got, want)
		}
	}
}

// BenchmarkCarried is the cost the copy path pays per buffer passed on.
func BenchmarkCarried(b *testing.B) {
	p := New().Proxy()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Carried(proxy.FromMachine, 32<<10)
		}
	})
}
