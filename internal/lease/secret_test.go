package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/secrets"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// withSecrets gives d's Manager a real Box under a fresh key file.
func (d *domain) withSecrets(t *testing.T) {
	t.Helper()
	box, err := secrets.LoadKeyFile(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	d.m.cfg.Sealer = box
}

func (d *domain) given(addr string) []SecretValue {
	d.cloud.mu.Lock()
	defer d.cloud.mu.Unlock()
	return d.machines.secrets[addr]
}

func TestSetSecretSealsAuditsByNameAndReachesTheRunningMachine(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.withSecrets(t)
	l := d.running(t, "a", 1)
	value := "ghp_s3cret-value"
	delivered, err := d.m.SetSecret(context.Background(), l.Fingerprint, "GH_TOKEN", []byte(value+"\n"))
	if err != nil || !delivered {
		t.Fatalf("SetSecret = %v, %v; want delivered", delivered, err)
	}
	// The trailing newline of echo is not part of the value.
	want := []SecretValue{{Name: "GH_TOKEN", Value: []byte(value)}}
	if got := d.given(l.Address); !slices.EqualFunc(got, want, equalSecret) {
		t.Errorf("the machine was given %q, want %q", got, want)
	}
	p, _ := d.store.Person(l.Fingerprint)
	if len(p.Secrets) != 1 || bytes.Contains(p.Secrets[0].Sealed, []byte(value)) || !p.Secrets[0].Set.Equal(d.clock.Now()) {
		t.Fatalf("stored %+v; want one secret, sealed, set now", p.Secrets)
	}
	events, _ := d.store.Events(0)
	if len(events) != 1 || events[0].Kind != "secret-set" || events[0].Detail != "GH_TOKEN" {
		t.Errorf("events %+v; want one secret-set naming GH_TOKEN", events)
	}
	listed, _ := d.m.Secrets(l.Fingerprint)
	if len(listed) != 1 || listed[0].Name != "GH_TOKEN" || listed[0].Sealed != nil {
		t.Errorf("Secrets = %+v; want the name and time only", listed)
	}

	delivered, err = d.m.RemoveSecret(context.Background(), l.Fingerprint, "GH_TOKEN")
	if err != nil || !delivered {
		t.Fatalf("RemoveSecret = %v, %v; want delivered", delivered, err)
	}
	if got := d.given(l.Address); len(got) != 0 {
		t.Errorf("after rm the machine keeps %q", got)
	}
	if kinds := d.store.kinds(l.Fingerprint); !slices.Equal(kinds, []string{"secret-set: GH_TOKEN", "secret-rm: GH_TOKEN"}) {
		t.Errorf("events %q", kinds)
	}
	var refused *SecretError
	if _, err := d.m.RemoveSecret(context.Background(), l.Fingerprint, "GH_TOKEN"); !errors.As(err, &refused) {
		t.Errorf("removing it again: %v; want a SecretError", err)
	}
}

func equalSecret(a, b SecretValue) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }

// TestSecretsReachAMachineAtStartAndAttach: set while the machine is
// stopped, they reach it when it starts, and again at every start; an
// attach to a machine that has them hands nothing over again, one that
// missed a change gets it.
func TestSecretsReachAMachineAtStartAndAttach(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: 4 * time.Hour}, ReaperConfig{})
	d.withSecrets(t)
	key := testkit.NewKey(t).Signer.PublicKey()
	fp := Fingerprint(key)
	l := d.running(t, "a", 1, in(StateStopped), func(l *Lease) { l.Fingerprint = fp })
	if delivered, err := d.m.SetSecret(context.Background(), fp, "GH_TOKEN", []byte("one")); err != nil || delivered {
		t.Fatalf("SetSecret on a stopped machine = %v, %v; want stored, not delivered", delivered, err)
	}
	d.cloud.getFn = func(context.Context, int64) (Server, error) { return Server{ID: 1, Status: "off"}, nil }
	d.cloud.powerOnFn = func(context.Context, int64) error { return nil }
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	if got := d.given(l.Address); len(got) != 1 || string(got[0].Value) != "one" {
		t.Fatalf("after the start the machine has %q", got)
	}

	// Stopped and started again, the machine gets them again.
	if _, err := d.m.Stop(context.Background(), fp); err != nil {
		t.Fatal(err)
	}
	before := len(d.cloud.made("SetSecrets"))
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(d.cloud.made("SetSecrets")) - before; n != 1 {
		t.Errorf("a start handed the secrets over %d times, want 1", n)
	}

	// An attach with nothing changed does not hand them over again.
	before = len(d.cloud.made("SetSecrets"))
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(d.cloud.made("SetSecrets")) - before; n != 0 {
		t.Errorf("an attach with nothing changed handed the secrets over %d times", n)
	}

	// A change the machine missed reaches it at the next attach.
	d.machines.setSecretsFn = func(context.Context, string, string, []SecretValue) error { return errors.New("no answer") }
	if delivered, err := d.m.SetSecret(context.Background(), fp, "GH_TOKEN", []byte("two")); err != nil || delivered {
		t.Fatalf("SetSecret with the machine not answering = %v, %v; want stored, not delivered", delivered, err)
	}
	d.machines.setSecretsFn = nil
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	if got := d.given(l.Address); len(got) != 1 || string(got[0].Value) != "two" {
		t.Fatalf("after the attach the machine has %q", got)
	}
}

func TestSecretsAreBounded(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.withSecrets(t)
	fp := "SHA256:a"
	for i := range MaxSecrets {
		name := "S_" + strings.Repeat("A", i+1)
		if _, err := d.m.SetSecret(context.Background(), fp, name, []byte("v")); err != nil {
			t.Fatalf("secret %d: %v", i, err)
		}
	}
	var refused *SecretError
	if _, err := d.m.SetSecret(context.Background(), fp, "ONE_MORE", []byte("v")); !errors.As(err, &refused) {
		t.Fatalf("one secret over the bound: %v; want a SecretError", err)
	}
	// Replacing one is no new secret.
	if _, err := d.m.SetSecret(context.Background(), fp, "S_A", []byte("w")); err != nil {
		t.Fatalf("replacing a secret at the bound: %v", err)
	}
}

func TestCheckSecretName(t *testing.T) {
	for _, ok := range []string{"GH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "_X", "A1", strings.Repeat("A", MaxSecretNameSize)} {
		if err := CheckSecretName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "gh_token", "1X", "A-B", "A B", "A=B", "É", strings.Repeat("A", MaxSecretNameSize+1),
		"PATH", "HOME", "USER", "SHELL", "TERM", "LD_PRELOAD", "LD_LIBRARY_PATH", "SSH_AUTH_SOCK", "LC_ALL", "TMUX", "XDG_RUNTIME_DIR", "CC_GATEWAY_SECRETS"} {
		err := CheckSecretName(bad)
		var refused *SecretError
		if !errors.As(err, &refused) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want one sentence refusing it", bad, err)
		}
	}
}

func TestCheckSecretValue(t *testing.T) {
	for raw, want := range map[string]string{"v": "v", "v\n": "v", "v\r\n": "v", "a b=c": "a b=c"} {
		got, err := CheckSecretValue([]byte(raw))
		if err != nil || string(got) != want {
			t.Errorf("%q = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, bad := range []string{"", "\n", "a\nb", "a\n\n", "a\rb", "a\x00b", strings.Repeat("x", MaxSecretSize+1)} {
		got, err := CheckSecretValue([]byte(bad))
		var refused *SecretError
		if !errors.As(err, &refused) {
			t.Errorf("%.20q = %q, %v; want a SecretError", bad, got, err)
		}
	}
	if _, err := CheckSecretValue([]byte(strings.Repeat("x", MaxSecretSize) + "\n")); err != nil {
		t.Errorf("a value of the most size with echo's newline: %v", err)
	}
}

// TestSecretsUnderAnotherKeyAreLeftOut: after the key file was replaced,
// the secrets sealed under the old one do not open; the machine gets the
// others, and the value is nowhere in what is logged.
func TestSecretsUnderAnotherKeyAreLeftOut(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	logs := &testkit.Buffer{}
	d.m.log = slog.New(slog.NewTextHandler(logs, nil))
	d.withSecrets(t)
	l := d.running(t, "a", 1)
	if _, err := d.m.SetSecret(context.Background(), l.Fingerprint, "OLD_TOKEN", []byte("old-value")); err != nil {
		t.Fatal(err)
	}
	d.withSecrets(t)
	if _, err := d.m.SetSecret(context.Background(), l.Fingerprint, "NEW_TOKEN", []byte("new-value")); err != nil {
		t.Fatal(err)
	}
	want := []SecretValue{{Name: "NEW_TOKEN", Value: []byte("new-value")}}
	if got := d.given(l.Address); !slices.EqualFunc(got, want, equalSecret) {
		t.Errorf("the machine was given %q, want %q", got, want)
	}
	if out := logs.String(); !strings.Contains(out, "name=OLD_TOKEN") || strings.Contains(out, "old-value") || strings.Contains(out, "new-value") {
		t.Errorf("log %q; want the secret that does not open named, without its value", out)
	}
}

// Secrets and notification targets share one Person record: changes to
// both at once never undo one another.
func TestSecretsAndTargetsChangedAtOnceAreAllKept(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.withSecrets(t)
	const fp = "SHA256:both"
	const n = 5 // the most targets a person may have
	done := make(chan error, 2*n)
	for i := range n {
		go func() {
			_, err := d.m.SetSecret(context.Background(), fp, fmt.Sprintf("TOKEN_%d", i), []byte("v"))
			done <- err
		}()
		go func() {
			_, err := d.m.AddNotifyTarget(context.Background(), fp, fmt.Sprintf("http://127.0.0.1:9/t%d", i))
			done <- err
		}()
	}
	for range 2 * n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	p, err := d.store.Person(fp)
	if err != nil || len(p.Secrets) != n || len(p.Notify) != n {
		t.Fatalf("after %d of each at once: %d secrets, %d targets (%v)", n, len(p.Secrets), len(p.Notify), err)
	}
}
