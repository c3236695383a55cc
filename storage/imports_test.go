package storage_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Each backend's driver stays in its package: only storage/bolt imports
// bbolt and only storage/postgres imports pgx; the contract (this package)
// and everyone else use interfaces. Tests are exempt (the process-level
// tests read a PostgreSQL database directly to check what was stored).
func TestOnlyBackendsImportDrivers(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{
		"go.etcd.io/bbolt":        "storage/bolt",
		"github.com/jackc/pgx/v5": "storage/postgres",
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		dir := filepath.ToSlash(filepath.Dir(rel))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for driver, owner := range owners {
				if (p == driver || strings.HasPrefix(p, driver+"/")) && dir != owner && !strings.HasPrefix(dir, owner+"/") {
					t.Errorf("%s imports %s: only %s may", rel, p, owner)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 40 {
		t.Fatalf("only %d Go files checked; is the walk rooted right (%s)?", checked, root)
	}
}
