package main

// The user contract as script tests: testdata/script/*.txtar, each a
// document of commands people type, what they see and how they exit. Each
// script may start one gateway in local mode; the scripts run in parallel.
//
// Commands the scripts have beside testscript's own:
//
//	key NAME               make NAME's key: NAME (private) and NAME.pub in $WORK
//	gateway [FLAGS...]     start the gateway in local mode with FLAGS (files
//	                       named as $WORK/NAME)
//	ssh NAME@gw [ARGS...]  the real ssh client as NAME (their key is made if
//	                       missing); leading ARGS starting with "-" are ssh's
//	exitcode N             the last ssh exited with N
//	capture VAR REGEXP     set VAR to REGEXP's first group in the last stdout

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Values[scriptKey{}] = &scriptState{t: env.T().(testing.TB), work: env.WorkDir, people: map[string]*person{}}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"key":      scriptKeyCmd,
			"gateway":  scriptGateway,
			"ssh":      scriptSSH,
			"exitcode": scriptExitCode,
			"capture":  scriptCapture,
		},
	})
}

type scriptKey struct{}

// scriptState is one script's gateway, people and last ssh exit code.
type scriptState struct {
	t      testing.TB
	work   string
	lg     *localGateway
	g      *gatewayProc
	people map[string]*person
	code   int
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

func scriptGateway(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if neg || s.g != nil {
		ts.Fatalf("usage: gateway [FLAGS...], once per script")
	}
	s.lg = newLocalGatewayIn(s.t, filepath.Join(s.work, ".gateway"), args...)
	s.g = s.lg.start(s.t)
}

func scriptSSH(ts *testscript.TestScript, neg bool, args []string) {
	s := state(ts)
	if s.g == nil || len(args) == 0 || !strings.HasSuffix(args[0], "@gw") {
		ts.Fatalf("usage: ssh NAME@gw [ARGS...], after gateway")
	}
	p := s.personNamed(ts, strings.TrimSuffix(args[0], "@gw"))
	r := p.ssh(s.g, s.lg.hostKeys, "", args[1:]...)
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
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("stdout has no match for %q", args[1])
	}
	ts.Setenv(args[0], m[1])
}
