package machine

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Names of the user database files a machine keeps in its folder.
const (
	passwdFile = "passwd"
	groupFile  = "group"
)

// nssWrapperPaths are where distributions put libnss_wrapper.so (Debian:
// libnss-wrapper).
var nssWrapperPaths = []string{
	"/usr/lib/" + multiarch[runtime.GOARCH] + "/libnss_wrapper.so",
	"/usr/lib64/libnss_wrapper.so",
	"/usr/lib/libnss_wrapper.so",
}

// multiarch is Debian's folder name for each architecture's libraries.
var multiarch = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
	"arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu",
}

var warnNoNSSWrapper sync.Once

// NSSWrapper returns where libnss_wrapper.so is installed, or "" if it is
// not: without it, the instance user has no home on local machines.
func NSSWrapper() string {
	for _, p := range nssWrapperPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// userDatabase gives the machine's programs a user database in which the
// instance user exists, with the machine's HOME as home folder: so `~user`
// expands there (Ansible's scp transfers, `cd ~claude`), `whoami` names
// the instance user, and sshd starts sessions in HOME. The database is two
// files in the machine's folder (the host's entries, with the instance
// user's first), read through nss_wrapper, preloaded by the returned
// variables. Without libnss_wrapper.so it returns no variables and warns
// once: programs then see the host's user database.
func userDatabase(dir, user, home string, log *slog.Logger) ([]string, error) {
	lib := NSSWrapper()
	if lib == "" {
		warnNoNSSWrapper.Do(func() {
			log.Warn("libnss_wrapper.so not found (Debian: apt install libnss-wrapper): on local machines ~" + user + " does not expand to the machine's home, and OpenSSH machines start sessions in the OS user's own home folder")
		})
		return nil, nil
	}
	uid, gid := os.Getuid(), os.Getgid()
	entry := fmt.Sprintf("%s:x:%d:%d:%s:%s:%s\n", user, uid, gid, user, home, loginShell())
	passwd := []byte(entry)
	passwd = append(passwd, hostEntries("/etc/passwd", user)...)
	group := hostEntries("/etc/group", "")
	if !strings.Contains("\n"+string(group), "\n"+user+":") {
		group = append(group, fmt.Sprintf("%s:x:%d:\n", user, gid)...)
	}
	pw, gr := filepath.Join(dir, passwdFile), filepath.Join(dir, groupFile)
	if err := writeFile(pw, passwd); err != nil {
		return nil, err
	}
	if err := writeFile(gr, group); err != nil {
		return nil, err
	}
	return []string{"LD_PRELOAD=" + lib, "NSS_WRAPPER_PASSWD=" + pw, "NSS_WRAPPER_GROUP=" + gr}, nil
}

// hostEntries returns the lines of a host database file, leaving out the
// entry named skip. An unreadable file gives nothing.
func hostEntries(path, skip string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if skip != "" && strings.HasPrefix(line, skip+":") {
			continue
		}
		out = append(out, line+"\n"...)
	}
	return out
}

// passwdShell is the login shell of uid in the host's password database.
func passwdShell(uid int) string {
	want := strconv.Itoa(uid)
	for _, line := range strings.Split(string(hostEntries("/etc/passwd", "")), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) == 7 && fields[2] == want {
			return fields[6]
		}
	}
	return ""
}
