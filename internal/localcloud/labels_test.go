package localcloud

import "testing"

func TestLabelSelector(t *testing.T) {
	labels := map[string]string{"cc-gateway": "default", "cc-gateway-lease": "abc", "env": "prod"}
	tests := []struct {
		sel  string
		want bool
	}{
		{"cc-gateway=default", true},
		{"cc-gateway==default", true},
		{"cc-gateway=other", false},
		{"cc-gateway=default,cc-gateway-lease=abc", true},
		{"cc-gateway=default,cc-gateway-lease=xyz", false},
		{"cc-gateway!=other", true},
		{"env!=prod", false},
		{"missing!=x", true},
		{"env", true},
		{"missing", false},
		{"!missing", true},
		{"!env", false},
		{"env in (dev,prod)", true},
		{"env in (dev, test)", false},
		{"env notin (dev,test),cc-gateway=default", true},
		{"env notin (prod)", false},
		{"missing notin (prod)", true},
	}
	for _, tt := range tests {
		sel, err := parseSelector(tt.sel)
		if err != nil {
			t.Errorf("parse %q: %v", tt.sel, err)
			continue
		}
		if got := sel.matches(labels); got != tt.want {
			t.Errorf("%q matches %v = %v, want %v", tt.sel, labels, got, tt.want)
		}
	}
	for _, bad := range []string{"a=b,", ",a", "env in dev", "a b"} {
		if _, err := parseSelector(bad); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}

func TestValidateLabels(t *testing.T) {
	good := map[string]string{"cc-gateway": "default", "example.com/my": "label", "just-a-key": ""}
	if err := validateLabels(good); err != nil {
		t.Errorf("valid labels refused: %v", err)
	}
	for _, bad := range []map[string]string{
		{"": "x"},
		{"-key": "x"},
		{"key": "has space"},
		{"key": "-dash"},
		{"Bad_Prefix/key": "x"},
	} {
		if err := validateLabels(bad); err == nil {
			t.Errorf("invalid labels %v accepted", bad)
		}
	}
}
