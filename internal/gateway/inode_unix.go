package gateway

import (
	"os"
	"syscall"
)

// inodeOf tells a replaced file (editors write a new one and rename it) from
// one edited in place within the same second.
func inodeOf(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
