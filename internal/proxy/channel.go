package proxy

import (
	"errors"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// Opener opens channels on an SSH connection: the person's connection
// (*gossh.ServerConn) or the machine's (*gossh.Client).
type Opener interface {
	OpenChannel(name string, data []byte) (gossh.Channel, <-chan *gossh.Request, error)
}

// Pipe joins two accepted channels of type kind that carry a byte stream
// (direct-tcpip, forwarded-tcpip, auth-agent@openssh.com): a on the
// person's connection, b on the machine's. Data and EOF flow both ways
// independently, requests are passed on with their replies, and when either
// side closes its channel, or both have sent EOF, both are closed. activity,
// if not nil, is called after every read that returned data; obs, if not
// nil, sees the channel and its bytes. Pipe returns once every goroutine it
// started has ended.
func Pipe(a gossh.Channel, aReqs <-chan *gossh.Request, b gossh.Channel, bReqs <-chan *gossh.Request, kind string, activity func(), obs Observer) {
	if activity == nil {
		activity = func() {}
	}
	defer opened(obs, kind)()
	// Events, each sent once: a side's stream reached EOF (every byte it
	// sent was passed on), or a side's channel closed.
	const (
		aDrained = iota
		bDrained
		aClosed
		bClosed
	)
	events := make(chan int, 4)
	flow := func(dst, src gossh.Channel, drained int, d Direction) {
		copyStream(dst, src, meter{activity: activity, obs: obs, d: d})
		dst.CloseWrite()
		events <- drained
	}
	requests := func(dst gossh.Channel, reqs <-chan *gossh.Request, closed int) {
		for req := range reqs {
			ok, err := dst.SendRequest(req.Type, req.WantReply, req.Payload)
			req.Reply(ok && err == nil, nil)
		}
		// The requests stream ends when the channel is closed.
		events <- closed
	}
	var wg sync.WaitGroup
	wg.Go(func() { flow(b, a, aDrained, ToMachine) })
	wg.Go(func() { flow(a, b, bDrained, FromMachine) })
	wg.Go(func() { requests(b, aReqs, aClosed) })
	wg.Go(func() { requests(a, bReqs, bClosed) })

	// Done when both streams ended, or when one side closed its channel
	// and everything it sent before has been passed on. Closing both
	// channels then ends whatever still runs.
	var seen [4]bool
	for {
		seen[<-events] = true
		if seen[aDrained] && (seen[bDrained] || seen[aClosed]) || seen[bDrained] && seen[bClosed] {
			break
		}
	}
	a.Close()
	b.Close()
	wg.Wait()
}

// RejectReason turns an error from OpenChannel into the reason and message
// to pass on to the side that asked for the channel.
func RejectReason(err error, fallback string) (gossh.RejectionReason, string) {
	var oe *gossh.OpenChannelError
	if errors.As(err, &oe) {
		return oe.Reason, oe.Message
	}
	return gossh.ConnectionFailed, fallback
}
