package proxy

import (
	"fmt"
	"io"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// These benchmarks relay bulk data between a real sshd and an x/crypto
// client, through the bridge and directly, in this process, so that a CPU
// profile shows where the bridge's time goes:
//
//	go test ./internal/proxy -run '^$' -bench Relay -cpuprofile cpu.out
//	go tool pprof -top -focus 'proxy|crypto/ssh' proxy.test cpu.out
//
// The client's own work is in the profile too. The end-to-end figures, with
// OpenSSH's client and the gateway binary, come from ./bench.

const relayBytes = 256 << 20

func BenchmarkRelayDownload(b *testing.B) {
	for _, via := range []string{"direct", "bridge"} {
		b.Run(via, func(b *testing.B) {
			c := relayClient(b, via)
			b.SetBytes(relayBytes)
			for b.Loop() {
				relay(b, c, fmt.Sprintf("head -c %d /dev/zero", relayBytes), nil)
			}
		})
	}
}

func BenchmarkRelayUpload(b *testing.B) {
	for _, via := range []string{"direct", "bridge"} {
		b.Run(via, func(b *testing.B) {
			c := relayClient(b, via)
			b.SetBytes(relayBytes)
			for b.Loop() {
				relay(b, c, "cat >/dev/null", io.LimitReader(zeros{}, relayBytes))
			}
		})
	}
}

func relayClient(b *testing.B, via string) *gossh.Client {
	m, fd := setup(b.Context(), b)
	if via == "bridge" {
		return fd.dial(b)
	}
	c, err := gossh.Dial("tcp", m.addr, &gossh.ClientConfig{
		User: m.user, Auth: []gossh.AuthMethod{gossh.PublicKeys(fd.gatewayKey)},
		HostKeyCallback: gossh.FixedHostKey(m.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func relay(b *testing.B, c *gossh.Client, cmd string, stdin io.Reader) {
	s, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Stdin = stdin
	s.Stdout = io.Discard
	if err := s.Run(cmd); err != nil {
		b.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
