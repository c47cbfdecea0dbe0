package preflight

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOutcomes: a warning prints and is logged but does not stop the
// gateway; a problem does.
func TestOutcomes(t *testing.T) {
	checks := []Check{
		Passed("API", "accepted"),
		Warned("deprecation", "cx22 in fsn1 is deprecated: choose cx23"),
	}
	if err := Problems(checks); err != nil {
		t.Errorf("a warning stops the gateway: %v", err)
	}
	if got := Warnings(checks); !slices.Equal(got, []string{"deprecation: cx22 in fsn1 is deprecated: choose cx23"}) {
		t.Errorf("Warnings = %q", got)
	}
	checks = append(checks, Failed("image", "no snapshot: build one"))
	err := Problems(checks)
	if err == nil || strings.Contains(err.Error(), "deprecat") || !strings.HasSuffix(err.Error(), "\n  image: no snapshot: build one") {
		t.Errorf("Problems = %v, want the problem alone", err)
	}
	var b strings.Builder
	if err := Write(&b, checks); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		`(?m)^API +ok: accepted +-$`,
		`(?m)^deprecation +WARNING +cx22 in fsn1 is deprecated: choose cx23$`,
		`(?m)^image +PROBLEM +no snapshot: build one$`,
	} {
		if !regexp.MustCompile(row).MatchString(b.String()) {
			t.Errorf("table has no row %s:\n%s", row, b.String())
		}
	}
}
