// Package generated fails when a generated file (CRDs, RBAC, deepcopy, protobuf) no longer matches its source:
// it regenerates a copy of the tree with `make manifests generate proto` and compares.
package generated

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/localcluster"
)

// generatedDirs hold the generators' output.
var generatedDirs = []string{"api", "config", "internal"}

func TestGeneratedFilesAreFresh(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := copyTree(root, work); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "manifests", "generate", "proto")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make manifests generate: %v\n%s", err, out)
	}

	want, got := snapshot(t, work), snapshot(t, root)
	for path, w := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s is generated but missing: run `make manifests generate proto`", path)
		} else if !bytes.Equal(g, w) {
			t.Errorf("%s is stale: run `make manifests generate proto`", path)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("%s is no longer generated: remove it", path)
		}
	}
}

// snapshot reads every file under the generated directories.
func snapshot(t *testing.T, root string) map[string][]byte {
	files := map[string][]byte{}
	for _, dir := range generatedDirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			rel, _ := filepath.Rel(root, path)
			files[rel] = data
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// copyTree copies the source tree, leaving out built binaries and git's store.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if rel == "bin" || rel == ".git" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
}
