package machine

import (
	"os"

	"golang.org/x/sys/unix"
)

// Terminal mode opcodes of RFC 4254 section 8 (and RFC 8160 for IUTF8),
// mapped to Linux termios. Opcodes Linux has no counterpart for are skipped.
var (
	modeChars = map[byte]int{
		1: unix.VINTR, 2: unix.VQUIT, 3: unix.VERASE, 4: unix.VKILL, 5: unix.VEOF,
		6: unix.VEOL, 7: unix.VEOL2, 8: unix.VSTART, 9: unix.VSTOP, 10: unix.VSUSP,
		12: unix.VREPRINT, 13: unix.VWERASE, 14: unix.VLNEXT, 18: unix.VDISCARD,
	}
	modeIflags = map[byte]uint32{
		30: unix.IGNPAR, 31: unix.PARMRK, 32: unix.INPCK, 33: unix.ISTRIP, 34: unix.INLCR,
		35: unix.IGNCR, 36: unix.ICRNL, 37: unix.IUCLC, 38: unix.IXON, 39: unix.IXANY,
		40: unix.IXOFF, 41: unix.IMAXBEL, 42: unix.IUTF8,
	}
	modeLflags = map[byte]uint32{
		50: unix.ISIG, 51: unix.ICANON, 52: unix.XCASE, 53: unix.ECHO, 54: unix.ECHOE,
		55: unix.ECHOK, 56: unix.ECHONL, 57: unix.NOFLSH, 58: unix.TOSTOP, 59: unix.IEXTEN,
		60: unix.ECHOCTL, 61: unix.ECHOKE, 62: unix.PENDIN,
	}
	modeOflags = map[byte]uint32{
		70: unix.OPOST, 71: unix.OLCUC, 72: unix.ONLCR, 73: unix.OCRNL, 74: unix.ONOCR, 75: unix.ONLRET,
	}
	modeCflags = map[byte]uint32{92: unix.PARENB, 93: unix.PARODD}
	modeSizes  = map[byte]uint32{90: unix.CS7, 91: unix.CS8}
)

const (
	ttyOpEnd = 0
	// Opcodes from 160 on carry arguments of unknown shape, so parsing
	// stops there, as RFC 4254 prescribes.
	ttyOpFirstUnknown = 160
	// vdisable is how SSH says "this control character is disabled".
	vdisable = 255
)

// applyModes sets the terminal modes of a pty-req on the PTY slave. Speeds
// are left alone: a pseudo-terminal has none.
func applyModes(tty *os.File, modes []byte) error {
	if len(modes) == 0 {
		return nil
	}
	fd := int(tty.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	for len(modes) >= 5 {
		op := modes[0]
		if op == ttyOpEnd || op >= ttyOpFirstUnknown {
			break
		}
		v := uint32(modes[1])<<24 | uint32(modes[2])<<16 | uint32(modes[3])<<8 | uint32(modes[4])
		modes = modes[5:]
		if i, ok := modeChars[op]; ok {
			c := byte(v)
			if v == vdisable {
				c = 0 // _POSIX_VDISABLE on Linux
			}
			t.Cc[i] = c
			continue
		}
		if size, ok := modeSizes[op]; ok {
			if v != 0 {
				t.Cflag = t.Cflag&^unix.CSIZE | size
			}
			continue
		}
		for _, m := range []struct {
			table map[byte]uint32
			flags *uint32
		}{{modeIflags, &t.Iflag}, {modeLflags, &t.Lflag}, {modeOflags, &t.Oflag}, {modeCflags, &t.Cflag}} {
			if bit, ok := m.table[op]; ok {
				if v != 0 {
					*m.flags |= bit
				} else {
					*m.flags &^= bit
				}
			}
		}
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
