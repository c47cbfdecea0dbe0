package localcloud

import (
	"fmt"
	"regexp"
	"strings"
)

// Labels follow Hetzner's rules: a key is an optional DNS-style prefix and
// "/" and a name; names and values are up to 63 characters of letters,
// digits, ".", "_" and "-", starting and ending alphanumeric (values may be
// empty).
var (
	labelNamePattern   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$`)
	labelPrefixPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
)

func validateLabels(labels map[string]string) error {
	for k, v := range labels {
		name := k
		if prefix, rest, ok := strings.Cut(k, "/"); ok {
			if !labelPrefixPattern.MatchString(prefix) {
				return fmt.Errorf("label key %q has an invalid prefix", k)
			}
			name = rest
		}
		if !labelNamePattern.MatchString(name) {
			return fmt.Errorf("label key %q is invalid", k)
		}
		if v != "" && !labelNamePattern.MatchString(v) {
			return fmt.Errorf("label value %q of %q is invalid", v, k)
		}
	}
	return nil
}

// labelsView copies labels for an answer of the API, so that the answer
// does not share the record's map; no labels show as {}, not null.
func labelsView(labels map[string]string) map[string]string {
	view := make(map[string]string, len(labels))
	for k, v := range labels {
		view[k] = v
	}
	return view
}

// selector is a parsed label selector: every requirement must hold.
type selector []requirement

type requirement struct {
	key    string
	op     string // "=", "!=", "exists", "!exists", "in", "notin"
	values []string
}

// parseSelector reads Hetzner's label selector syntax: comma-separated
// requirements of the forms k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b).
func parseSelector(s string) (selector, error) {
	var sel selector
	for _, part := range splitTopLevel(s) {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("label selector %q has an empty requirement", s)
		}
		r, err := parseRequirement(part)
		if err != nil {
			return nil, fmt.Errorf("label selector %q: %w", s, err)
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// splitTopLevel splits on commas outside parentheses.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func parseRequirement(p string) (requirement, error) {
	if k, v, ok := strings.Cut(p, "!="); ok {
		return requirement{key: strings.TrimSpace(k), op: "!=", values: []string{strings.TrimSpace(v)}}, nil
	}
	if k, v, ok := strings.Cut(p, "=="); ok {
		return requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}, nil
	}
	if k, v, ok := strings.Cut(p, "="); ok {
		return requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}, nil
	}
	for _, op := range []string{" notin ", " in "} {
		if k, rest, ok := strings.Cut(p, op); ok {
			rest = strings.TrimSpace(rest)
			if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
				return requirement{}, fmt.Errorf("%q: values must be in parentheses", p)
			}
			var vals []string
			for _, v := range strings.Split(rest[1:len(rest)-1], ",") {
				vals = append(vals, strings.TrimSpace(v))
			}
			return requirement{key: strings.TrimSpace(k), op: strings.TrimSpace(op), values: vals}, nil
		}
	}
	if k, ok := strings.CutPrefix(p, "!"); ok {
		return requirement{key: strings.TrimSpace(k), op: "!exists"}, nil
	}
	if strings.ContainsAny(p, " ()") {
		return requirement{}, fmt.Errorf("%q is not a requirement", p)
	}
	return requirement{key: p, op: "exists"}, nil
}

func (sel selector) matches(labels map[string]string) bool {
	for _, r := range sel {
		v, has := labels[r.key]
		switch r.op {
		case "=":
			if !has || v != r.values[0] {
				return false
			}
		case "!=":
			if has && v == r.values[0] {
				return false
			}
		case "exists":
			if !has {
				return false
			}
		case "!exists":
			if has {
				return false
			}
		case "in", "notin":
			found := false
			for _, want := range r.values {
				if has && v == want {
					found = true
				}
			}
			if found != (r.op == "in") {
				return false
			}
		}
	}
	return true
}
