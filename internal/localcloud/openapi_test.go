package localcloud_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
)

// The fake is checked against an OpenAPI description of the real Hetzner
// Cloud API, kept with its licence and source in testdata/hcloud-openapi.

// specPath is relative to this package's folder, where go test runs.
const specPath = "testdata/hcloud-openapi/hcloud.json"

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// openAPIRouter loads the description once per test binary (it is large).
func openAPIRouter(t *testing.T) routers.Router {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(specPath)
		if err != nil {
			specErr = fmt.Errorf("load %s: %w", specPath, err)
			return
		}
		// Route on paths alone: requests go to the fake, not to the
		// servers the description names.
		doc.Servers = nil
		upperCaseStatusRanges(doc)
		// Hetzner's own examples do not all match its schemas; the
		// schemas are what the fake must honour.
		specRouter, specErr = legacyrouter.NewRouter(doc, openapi3.DisableExamplesValidation())
	})
	if specErr != nil {
		t.Fatalf("Hetzner OpenAPI description: %v", specErr)
	}
	return specRouter
}

// upperCaseStatusRanges renames the description's "4xx"/"5xx" responses to
// the "4XX"/"5XX" spelling OpenAPI 3.0 defines (and kin-openapi matches), so
// error answers are checked against Hetzner's error schema instead of
// being rejected as undocumented.
func upperCaseStatusRanges(doc *openapi3.T) {
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, key := range op.Responses.Keys() {
				if upper := strings.ToUpper(key); upper != key {
					op.Responses.Set(upper, op.Responses.Value(key))
					op.Responses.Delete(key)
				}
			}
		}
	}
}

// validator sits between the client and the fake and checks every answer
// against the operation it answers.
type validator struct {
	router routers.Router
	next   http.Handler

	mu       sync.Mutex
	seen     map[string]int // "GET /servers/{id} 200" → count
	failures []string
}

func newValidator(t *testing.T, next http.Handler) *validator {
	return &validator{router: openAPIRouter(t), next: next, seen: map[string]int{}}
}

func (v *validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	v.next.ServeHTTP(rec, r)
	res := rec.Result()
	body := rec.Body.Bytes()

	if err := v.check(r, res.StatusCode, res.Header, body); err != nil {
		v.mu.Lock()
		v.failures = append(v.failures, err.Error())
		v.mu.Unlock()
	}

	for k, vals := range res.Header {
		w.Header()[k] = vals
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

func (v *validator) check(r *http.Request, status int, header http.Header, body []byte) error {
	req := r.Clone(context.Background())
	req.URL.Path = strings.TrimPrefix(r.URL.Path, "/v1")
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s: no operation in the description: %v", r.Method, r.URL.Path, err)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fmt.Errorf("%s %s → %d does not match the description: %v\nbody: %s", r.Method, r.URL.String(), status, err, body)
	}
	v.mu.Lock()
	v.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, status)]++
	v.mu.Unlock()
	return nil
}

// report fails t with every mismatch and every expected exchange that the
// run never produced.
func (v *validator) report(t *testing.T, want []string) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, f := range v.failures {
		t.Error(f)
	}
	var missing []string
	for _, w := range want {
		if v.seen[w] == 0 {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		var seen []string
		for k := range v.seen {
			seen = append(seen, k)
		}
		slices.Sort(seen)
		t.Errorf("the run never validated %q\nit validated:\n  %s", missing, strings.Join(seen, "\n  "))
	}
}

// TestValidatorCatchesMismatches guards the guard: a response missing
// required fields must not pass.
func TestValidatorCatchesMismatches(t *testing.T) {
	v := newValidator(t, nil)
	req := httptest.NewRequest(http.MethodGet, "/v1/servers/7", nil)
	header := http.Header{"Content-Type": {"application/json"}}
	if err := v.check(req, http.StatusOK, header, []byte(`{"server":{"id":7,"name":"x"}}`)); err == nil {
		t.Fatal("a server without its required fields passed validation")
	}
	if err := v.check(req, http.StatusCreated, header, []byte(`{}`)); err == nil {
		t.Fatal("an undocumented status passed validation")
	}
	if err := v.check(req, http.StatusNotFound, header, []byte(`{"error":{"code":"not_found","message":"gone","details":null}}`)); err != nil {
		t.Fatalf("a well-formed error failed validation: %v", err)
	}
	key := httptest.NewRequest(http.MethodGet, "/v1/ssh_keys/7", nil)
	const goodKey = `{"ssh_key":{"id":7,"name":"x","fingerprint":"f","public_key":"k","labels":{},"created":"2025-01-30T23:50:00Z"}}`
	if err := v.check(key, http.StatusOK, header, []byte(goodKey)); err != nil {
		t.Fatalf("a well-formed ssh key failed validation: %v", err)
	}
	if err := v.check(key, http.StatusOK, header, []byte(strings.Replace(goodKey, "2025-01-30T23:50:00Z", "yesterday", 1))); err == nil {
		t.Fatal("an ssh key with a malformed date passed validation")
	}
	post := httptest.NewRequest(http.MethodPost, "/v1/ssh_keys", bytes.NewReader(nil))
	if err := v.check(post, http.StatusCreated, header, []byte(`{"ssh_key":{"id":"one"}}`)); err == nil {
		t.Fatal("an ssh key with a string id passed validation")
	}
}
