package proxy

import (
	"errors"
	"io"
	"sync"
)

const (
	// idleBufferSize is what a copy holds while nothing flows: keystrokes
	// and prompts fit, and hundreds of idle sessions stay cheap.
	idleBufferSize = 2 << 10
	// burstBufferSize is larger than one SSH packet (32 KiB) so a read can
	// take everything a channel has buffered in one go.
	burstBufferSize = 64 << 10
)

var burstBuffers = sync.Pool{New: func() any {
	b := make([]byte, burstBufferSize)
	return &b
}}

// copyStream moves bytes from src to dst until EOF or an error on either
// side, reporting to m after every read that returned data: the activity
// at once, the bytes once written. It reads into
// a small buffer and borrows a large one only while a read fills the small
// one, so an idle session holds little memory while a bulk transfer moves
// 64 KiB per read.
func copyStream(dst io.Writer, src io.Reader, m meter) error {
	small := make([]byte, idleBufferSize)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			burstBuffers.Put(big)
		}
	}()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m.activity()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			m.count(n)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case big == nil && n == len(buf):
			big = burstBuffers.Get().(*[]byte)
			buf = *big
		case big != nil && n < idleBufferSize:
			burstBuffers.Put(big)
			big, buf = nil, small
		}
	}
}
