package main

// The user contract as script tests: testdata/script/*.txtar, each a
// document of commands people type, what they see and how they exit. Each
// script may start one gateway in local mode; the scripts run in parallel.
//
// $GATEWAY is the gateway binary, for scripts that run it to its end with
// exec. Commands the scripts have beside testscript's own:
//
//	key NAME               make NAME's key, with its public half in $WORK/NAME.pub
//	cloud                  start a local cloud of its own; $API is its endpoint,
//	                       $TOKEN its token
//	revoke                 the cloud refuses $TOKEN from now on
//	gateway [VAR=VALUE...] [FLAGS...]
//	                       start the gateway (in local mode unless
//	                       HCLOUD_TOKEN is set) with FLAGS; files are named
//	                       as $WORK/NAME
//	gatewaylog             print the gateway's log so far on stdout
//	ssh NAME@gw [ARGS...]  the real ssh client as NAME (their key is made if
//	                       missing); leading ARGS starting with "-" are ssh's
//	exitcode N             the last ssh exited with N
//	capture VAR stdout|stderr REGEXP
//	                       set VAR to REGEXP's first group in the last output

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Values[scriptKey{}] = &scriptState{t: env.T().(testing.TB), work: env.WorkDir, people: map[string]*person{}}
			env.Setenv("GATEWAY", gatewayBin)
			env.Setenv("CC_GATEWAY_FIREWALL_SOURCES", os.Getenv("CC_GATEWAY_FIREWALL_SOURCES")) // see TestMain
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"key":        scriptKeyCmd,
			"cloud":      scriptCloud,
			"revoke":     scriptRevoke,
			"gateway":    scriptGateway,
			"gatewaylog": scriptGatewayLog,
			"ssh":        scriptSSH,
			"exitcode":   scriptExitCode,
			"capture":    scriptCapture,
		},
	})
}

type scriptKey struct{}

// scriptState is one script's gateway, people and last ssh exit code.
type scriptState struct {
	t      testing.TB
	work   string
	g      *gatewayProc
	people map[string]*person
	code   int
	cloud  *revocable
}

func state(ts *testscript.TestScript) *scriptState {
	return ts.Value(scriptKey{}).(*scriptState)
}

// personNamed returns NAME's key, made on first use, with the public half
// written to $WORK/NAME.pub for allow lists.
func (s *scriptState) personNamed(ts *testscript.TestScript, name string) *person {
	if p, ok := s.people[name]; ok {
		return p
	}
	p := newPerson(s.t, filepath.Join(s.work, ".people", name))
	ts.Check(os.WriteFile(filepath.Join(s.work, name+".pub"), []byte(p.authorizedLine()+"\n"), 0o600))
	s.people[name] = p
	return p
}

func scriptKeyCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: key NAME")
	}
	state(ts).personNamed(ts, args[0])
}

// scriptCloud starts a local cloud apart from any gateway, for a gateway
// in Hetzner mode to use (with the right token or a wrong one).
func scriptCloud(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if neg || len(args) != 0 || s.cloud != nil {
		ts.Fatalf("usage: cloud, once per script")
	}
	s.cloud = &revocable{}
	dir := filepath.Join(s.work, ".cloud")
	c, err := localcloud.Start(localcloud.Options{
		DataDir: dir, SSHPort: testkit.FreePort(s.t), Kind: localcloud.KindBuiltin,
		ActionDuration: localcloudtest.ActionDuration, Faults: s.cloud, Logger: testkit.Quiet,
	})
	ts.Check(err)
	ts.Defer(func() { c.Close() })
	ts.Setenv("API", c.Endpoint())
	ts.Setenv("TOKEN", c.Token())
}

func scriptRevoke(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if neg || len(args) != 0 || s.cloud == nil {
		ts.Fatalf("usage: revoke, after cloud")
	}
	s.cloud.revoked.Store(true)
}

// revocable is the script cloud's faults: once revoked, the cloud refuses
// every request's token, as Hetzner does after the operator deletes it.
type revocable struct{ revoked atomic.Bool }

func (r *revocable) Request(w http.ResponseWriter, _ *http.Request) bool {
	if !r.revoked.Load() {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, `{"error":{"code":"unauthorized","message":"unable to authenticate","details":null}}`)
	return true
}

func (r *revocable) Action(string) localcloud.ActionFault { return localcloud.ActionFault{} }

func scriptGateway(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if neg || s.g != nil {
		ts.Fatalf("usage: gateway [VAR=VALUE...] [FLAGS...], once per script")
	}
	var env []string
	for len(args) > 0 && strings.Contains(args[0], "=") && !strings.HasPrefix(args[0], "-") {
		env, args = append(env, args[0]), args[1:]
	}
	s.g = newLocalGatewayIn(s.t, filepath.Join(s.work, ".gateway"), args...).start(s.t, env...)
}

func scriptGatewayLog(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if neg || len(args) != 0 || s.g == nil {
		ts.Fatalf("usage: gatewaylog, after gateway")
	}
	ts.Stdout().Write([]byte(s.g.logs.String()))
}

func scriptSSH(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if s.g == nil || len(args) == 0 || !strings.HasSuffix(args[0], "@gw") {
		ts.Fatalf("usage: ssh NAME@gw [ARGS...], after gateway")
	}
	p := s.personNamed(ts, strings.TrimSuffix(args[0], "@gw"))
	r := p.ssh(s.g, "", args[1:]...)
	ts.Stdout().Write([]byte(r.stdout))
	ts.Stderr().Write([]byte(r.stderr))
	s.code = r.code
	if neg != (r.code != 0) {
		ts.Fatalf("ssh exited %d", r.code)
	}
}

func scriptExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: exitcode N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if got := state(ts).code; got != want {
		ts.Fatalf("ssh exited %d, want %d", got, want)
	}
}

func scriptCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 || args[1] != "stdout" && args[1] != "stderr" {
		ts.Fatalf("usage: capture VAR stdout|stderr REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[2]) // multi-line, as stdout and stderr match
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("%s has no match for %q", args[1], args[2])
	}
	ts.Setenv(args[0], m[1])
}
