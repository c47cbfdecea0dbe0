package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// refusingCloud is a gateway whose Hetzner provider holds a token the
// (local) cloud refuses: every cloud call fails with 401 and an operator's
// hint to check HCLOUD_TOKEN.
type refusingCloud struct {
	*rig
	logs *testkit.Buffer // the gateway's log
}

func newRefusingCloud(t *testing.T) *refusingCloud {
	t.Helper()
	cloud := localcloudtest.Start(t, localcloud.KindBuiltin)
	provider, err := hcloud.New(hcloud.Config{
		Token: "not-the-token", Endpoint: cloud.Endpoint(), ImageSelector: localcloud.LocalImageLabel, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &refusingCloud{logs: &testkit.Buffer{}}
	r.rig = startRig(t, rigSpec{
		provider: provider, sshPort: cloud.SSHPort,
		logger: slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		policy: plainPolicy,
	})
	return r
}

// run runs cmd as person and returns its stderr and exit status.
func (r *refusingCloud) run(t *testing.T, person gossh.Signer, cmd string) (string, int) {
	t.Helper()
	s, err := r.dial(t, person).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	s.Stderr = &stderr
	err = s.Run(cmd)
	var ee *gossh.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%q: want an exit status, got %v (stderr %q)", cmd, err, stderr.String())
	}
	return stderr.String(), ee.ExitStatus()
}

// refPattern matches a reference: the connection's id, the error's number.
var refPattern = regexp.MustCompile(`ref (([0-9a-z]{8})-[0-9]+)\b`)

// checkTold checks that the person was told sentence and a reference, none
// of the operator's details, and that the log holds the whole chain under
// that reference.
func (r *refusingCloud) checkTold(t *testing.T, stderr, sentence string) {
	t.Helper()
	if !strings.Contains(stderr, sentence) {
		t.Errorf("person was told %q, want %q", stderr, sentence)
	}
	// The reference is random hex: it may well contain "401".
	told := refPattern.ReplaceAllString(stderr, "ref")
	for _, operators := range []string{"HCLOUD_TOKEN", "401", "Hetzner", "127.0.0.1", "token"} {
		if strings.Contains(told, operators) {
			t.Errorf("person was told %q: %q is for the operator", stderr, operators)
		}
	}
	m := refPattern.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("person was told %q: no reference", stderr)
	}
	for _, l := range r.lines(t) {
		if l["ref"] == m[1] {
			if err, _ := l["err"].(string); !strings.Contains(err, "HCLOUD_TOKEN") || !strings.Contains(err, "401") {
				t.Errorf("log line with ref %s lacks the cause: %v", m[1], l)
			}
			if l["conn"] != m[2] {
				t.Errorf("log line with ref %s is about connection %v", m[1], l["conn"])
			}
			return
		}
	}
	t.Errorf("no log line has ref %s:\n%s", m[1], r.logs.String())
}

// lines returns the lines of the log so far, each an attribute map.
func (r *refusingCloud) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.Lines(r.logs.String()) {
		var attrs map[string]any
		if err := json.Unmarshal([]byte(l), &attrs); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, attrs)
	}
	return out
}

// TestRefusedTokenIsToldAsSentenceAndRef: when the cloud refuses the
// gateway's token, the person is told what they can do and a reference;
// the operator's log says the token was refused, under that reference.
func TestRefusedTokenIsToldAsSentenceAndRef(t *testing.T) {
	r := newRefusingCloud(t)
	person := testkit.NewKey(t).Signer

	stderr, code := r.run(t, person, "echo hi")
	if code != exitGatewayFailure {
		t.Errorf("session exited %d, want %d", code, exitGatewayFailure)
	}
	r.checkTold(t, stderr, "could not prepare your machine; try again in a few minutes")

	// A port forward (ssh -L) is refused with the same kind of sentence.
	if _, err := r.dial(t, testkit.NewKey(t).Signer).Dial("tcp", "localhost:80"); err == nil {
		t.Error("a forward reached a machine the cloud could not make")
	} else {
		r.checkTold(t, err.Error(), "could not prepare your machine; try again in a few minutes")
	}

	// A lease whose server exists: stopping it asks the cloud, which refuses.
	now := time.Now()
	fp := lease.Fingerprint(person.PublicKey())
	if err := r.store.Put(lease.Lease{
		Fingerprint: fp, PublicKey: string(gossh.MarshalAuthorizedKey(person.PublicKey())),
		ID: "0123456789", ServerName: "cc-0123456789", ServerID: 7, State: lease.StateRunning,
		Created: now, Expires: now.Add(time.Hour), LastActivity: now,
	}); err != nil {
		t.Fatal(err)
	}
	stderr, code = r.run(t, person, "stop")
	if code != 1 {
		t.Errorf("stop exited %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "stop: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stop told %q, want one line starting with the command", stderr)
	}
	r.checkTold(t, stderr, "could not stop your machine; try again in a few minutes")
}

// TestDomainErrorsKeepTheirSentence: errors the lease domain words for
// people reach them as they are, with no reference.
func TestDomainErrorsKeepTheirSentence(t *testing.T) {
	expired := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, err := range []error{
		&lease.ExpiredError{Name: "cc-a", Expired: expired},
		&lease.CreatingError{Name: "cc-a"},
	} {
		var logs bytes.Buffer
		told := traceTo(&logs).tell(forPerson(err, "could not stop your machine"))
		if told != err.Error() {
			t.Errorf("told %q, want %q", told, err.Error())
		}
		if logs.Len() != 0 {
			t.Errorf("a sentence for people was logged as an error: %s", logs.String())
		}
	}
}

// TestStoreFailureIsToldPlainly: whatever a person asked, a failed lease
// database is told as such, with a reference for the operator.
func TestStoreFailureIsToldPlainly(t *testing.T) {
	var logs bytes.Buffer
	err := fmt.Errorf("get lease SHA256:x: %w: /data/gateway.db: bbolt panicked", lease.ErrStoreFailed)
	told := traceTo(&logs).tell(forPerson(err, "could not connect to your machine"))
	if !strings.HasPrefix(told, storeSentence+"; ") || !strings.Contains(told, "ref ") {
		t.Errorf("told %q, want the store's sentence and a reference", told)
	}
	if strings.Contains(told, "gateway.db") || !strings.Contains(logs.String(), "gateway.db") {
		t.Errorf("told %q, logged %s: the file is for the log only", told, logs.String())
	}
}

// TestStoreUnavailableIsToldAsPassing: an etcd store without quorum is
// told as temporary, not as a failed database.
func TestStoreUnavailableIsToldAsPassing(t *testing.T) {
	var logs bytes.Buffer
	err := fmt.Errorf("put lease SHA256:x: %w: etcd http://127.0.0.1:2379: etcdserver: no leader", lease.ErrStoreUnavailable)
	told := traceTo(&logs).tell(forPerson(err, "could not connect to your machine"))
	if !strings.HasPrefix(told, storeUnavailableSentence+"; try again") || !strings.Contains(told, "ref ") {
		t.Errorf("told %q, want the unavailable store's sentence and a reference", told)
	}
	if strings.Contains(told, "2379") || !strings.Contains(logs.String(), "no leader") {
		t.Errorf("told %q, logged %s: the cluster is for the log only", told, logs.String())
	}
}

// TestClaimFailureIsToldAsItsSentence: a claim of a warm pool machine
// cut short is told as the domain words it, with a reference, and the
// cause goes to the log only.
func TestClaimFailureIsToldAsItsSentence(t *testing.T) {
	var logs bytes.Buffer
	err := &lease.ClaimError{Name: "cc-a", Err: errors.New("personalise: connection refused by 10.0.0.7")}
	told := traceTo(&logs).tell(forPerson(err, "could not connect to your machine"))
	if !strings.HasPrefix(told, err.Sentence()+"; ") || !strings.Contains(told, "ref ") {
		t.Errorf("told %q, want the claim's sentence and a reference", told)
	}
	if strings.Contains(told, "10.0.0.7") || !strings.Contains(logs.String(), "10.0.0.7") {
		t.Errorf("told %q, logged %s: the cause is for the log only", told, logs.String())
	}
}

// traceTo is the trace of a connection whose log is written to w.
func traceTo(w io.Writer) *connTrace {
	return &connTrace{id: "k3v9x2mq", log: slog.New(slog.NewTextHandler(w, nil))}
}

// TestRefsNumberAConnectionsErrors: the references a connection's person
// is told are its id and the error's number on it, so each finds its own
// line and all of them the connection's.
func TestRefsNumberAConnectionsErrors(t *testing.T) {
	var logs bytes.Buffer
	trace := traceTo(&logs)
	var refs []string
	for range 2 {
		m := refPattern.FindStringSubmatch(trace.tell(forPerson(errors.New("boom"), "could not")))
		if m == nil {
			t.Fatal("told no reference")
		}
		refs = append(refs, m[1])
	}
	if refs[0] != "k3v9x2mq-1" || refs[1] != "k3v9x2mq-2" {
		t.Errorf("refs %q, want k3v9x2mq-1 and k3v9x2mq-2", refs)
	}
	for _, ref := range refs {
		if n := strings.Count(logs.String(), "ref="+ref+" "); n != 1 {
			t.Errorf("%d log lines with ref %s, want 1:\n%s", n, ref, logs.String())
		}
	}
}
