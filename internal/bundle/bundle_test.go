package bundle_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"

	"github.com/skeinmesh/skein/internal/bundle"
	"github.com/skeinmesh/skein/internal/localcluster"
)

// TestBundleIsCurrent regenerates the bundle from config/ and fails on any difference with bundle/:
// run `make bundle` after changing config/ or the API.
func TestBundleIsCurrent(t *testing.T) {
	root, assets := paths(t)
	out := t.TempDir()
	if err := bundle.Generate(bundle.Options{Root: root, Kubectl: filepath.Join(assets, "kubectl"), Out: out}); err != nil {
		t.Fatal(err)
	}
	want, got := readTree(t, out), readTree(t, filepath.Join(root, "bundle"))
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("bundle/%s is missing: run `make bundle`", name)
		case !bytes.Equal(g, w):
			t.Errorf("bundle/%s is stale: run `make bundle`", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("bundle/%s is no longer generated: run `make bundle`", name)
		}
	}
	if len(want) < 8 {
		t.Errorf("the generator wrote only %d files", len(want))
	}
}

// TestBundleValidates runs operator-framework's validators over bundle/ as OperatorHub's pipeline
// does: the default bundle validators, OperatorHub's, and the good practices.
func TestBundleValidates(t *testing.T) {
	root, _ := paths(t)
	for _, problem := range validate(t, filepath.Join(root, "bundle", "manifests")) {
		t.Error(problem)
	}
}

// TestValidationFindsProblems shows the validators above are awake: the same bundle without its
// minimum Kubernetes version, or with a category OperatorHub does not know, draws complaints.
func TestValidationFindsProblems(t *testing.T) {
	root, _ := paths(t)
	dir := t.TempDir()
	for name, data := range readTree(t, filepath.Join(root, "bundle", "manifests")) {
		if strings.HasSuffix(name, ".clusterserviceversion.yaml") {
			data = regexp.MustCompile(`(?m)^  minKubeVersion: .*\n`).ReplaceAll(data, nil)
			data = regexp.MustCompile(`(?m)^    categories: .*$`).ReplaceAll(data, []byte("    categories: Knitting"))
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems := strings.Join(validate(t, dir), "\n")
	for _, want := range []string{"minKubeVersion", "Knitting"} {
		if !strings.Contains(problems, want) {
			t.Errorf("no complaint about %s; the validators said:\n%s", want, problems)
		}
	}
}

// validate loads the bundle in dir and returns every error and warning the validators have.
func validate(t *testing.T, dir string) []string {
	t.Helper()
	b, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.CSV == nil || len(b.V1CRDs) != 5 {
		t.Fatalf("the bundle loaded with CSV %v and %d CRDs, want a CSV and 5 CRDs", b.CSV != nil, len(b.V1CRDs))
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
	)
	results := validators.Validate(append(b.ObjectsToValidate(), map[string]string{"k8s-version": "1.37"})...)
	if len(results) == 0 {
		t.Fatal("the validators returned no result")
	}
	var problems []string
	for _, r := range results {
		for _, e := range append(r.Errors, r.Warnings...) {
			problems = append(problems, fmt.Sprintf("%s: %s", r.Name, e))
		}
	}
	return problems
}

func paths(t *testing.T) (root, assets string) {
	t.Helper()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err = localcluster.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return root, assets
}

// readTree reads every file below dir, by path relative to it.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
