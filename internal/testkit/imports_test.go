package testkit

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportsNothingOfTheProject: any package's in-package tests import
// testkit, so testkit importing one of the project's packages would make an
// import cycle for that package's tests.
func TestImportsNothingOfTheProject(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.HasPrefix(imp.Path.Value, `"github.com/cc-gateway/cc-gateway/`) {
				t.Errorf("%s imports %s", name, imp.Path.Value)
			}
		}
	}
}
