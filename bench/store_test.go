package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

var storeRuns = flag.Int("store-runs", 5, "BenchmarkStore: new people per store, each asking status statusPerPerson times")

// statusPerPerson is how many times each new person of BenchmarkStore asks
// for status.
const statusPerPerson = 4

// BenchmarkStore measures what the lease store costs people: a new
// person's first connection (`ssh HOST 'echo ready'`: the machine is
// created, zero boot delay) and `ssh HOST status`, with one gateway on
// bbolt and one on a local 3-member etcd cluster, in the same run, the two
// taking turns person by person. It prints the medians and etcd's as a
// ratio of bbolt's; it asserts no timing.
//
//	go test ./bench -run '^$' -bench Store -benchtime 1x -timeout 30m
func BenchmarkStore(b *testing.B) {
	cluster := testkit.StartEtcd(b, 3)
	stores := []struct {
		name string
		h    *harness
		args []string
	}{
		{"bbolt", &harness{}, nil},
		{"etcd", &harness{}, []string{"--etcd-endpoints", strings.Join(cluster.Endpoints(), ",")}},
	}
	first := map[string][]time.Duration{}
	status := map[string][]time.Duration{}
	for _, s := range stores {
		b.Cleanup(s.h.close)
		s.h.start(b, s.args...)
	}
	for n := range *storeRuns {
		for _, s := range stores {
			config, err := s.h.coldPerson(b, n)
			if err != nil {
				b.Fatal(err)
			}
			took, _, err := echoReady(config)
			if err != nil {
				b.Fatalf("%s: first connection: %v", s.name, err)
			}
			first[s.name] = append(first[s.name], took)
			for range statusPerPerson {
				cmd := exec.Command("ssh", "-F", config, "gw", "status")
				cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
				took, err := timed(cmd)
				if err != nil {
					b.Fatalf("%s: status: %v", s.name, err)
				}
				status[s.name] = append(status[s.name], took)
			}
		}
	}
	b.Logf("median of %d first connections and %d status runs per store; a 3-member etcd cluster on loopback", *storeRuns, *storeRuns*statusPerPerson)
	b.Logf("%-18s | %-9s | %-9s | %s", "", "bbolt", "etcd", "etcd / bbolt")
	row := func(what string, runs map[string][]time.Duration, unit string) {
		bolt, etcd := median(runs["bbolt"]), median(runs["etcd"])
		ratio := etcd.Seconds() / bolt.Seconds()
		b.Logf("%-18s | %-9s | %-9s | %.3f", what, fmt.Sprintf("%.1fms", ms(bolt)), fmt.Sprintf("%.1fms", ms(etcd)), ratio)
		b.ReportMetric(ratio, unit)
	}
	row("first connection", first, "first-etcd/bbolt")
	row("status", status, "status-etcd/bbolt")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
