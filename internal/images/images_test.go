package images_test

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/skeinmesh/skein/internal/images"
	"github.com/skeinmesh/skein/internal/localcluster"
)

// wantHelp is a flag each binary lists in its --help, showing the entrypoint really ran.
var wantHelp = map[string]string{
	"skein-controller": "-identity-bind-address",
	"skein-proxy":      "-xds-addr",
}

// TestImages builds each image as `make images` does, checks that its config says what its
// Dockerfile says, unpacks its layer and runs the entrypoint with --help.
func TestImages(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, img := range images.Images {
		t.Run(img.Name, func(t *testing.T) {
			archive, err := images.Build(root, out, img)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			untar(t, archive, dir)
			p, err := layout.FromPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			index, err := p.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			manifest, err := index.IndexManifest()
			if err != nil || len(manifest.Manifests) != 1 {
				t.Fatalf("the archive's index holds %d images (%v), want 1", len(manifest.Manifests), err)
			}
			if ref := manifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != img.Name+":latest" {
				t.Errorf("the image is named %q", ref)
			}
			image, err := index.Image(manifest.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := image.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}

			df := parseDockerfile(t, filepath.Join(root, img.Dockerfile))
			if got, want := strings.Join(cfg.Config.Entrypoint, " "), strings.Join(df.entrypoint, " "); got != want || got == "" {
				t.Errorf("entrypoint %q, the Dockerfile's %q", got, want)
			}
			if cfg.Config.User != df.user || df.user == "" || strings.HasPrefix(df.user, "0") {
				t.Errorf("user %q, the Dockerfile's %q (and not root)", cfg.Config.User, df.user)
			}
			for k, v := range df.labels {
				if cfg.Config.Labels[k] != v {
					t.Errorf("label %s=%q, the Dockerfile's %q", k, cfg.Config.Labels[k], v)
				}
			}
			if len(df.labels) == 0 {
				t.Error("the Dockerfile sets no label")
			}

			layers, err := image.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("%d layers (%v), want 1", len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			fs := t.TempDir()
			extract(t, rc, fs)
			entry := filepath.Join(fs, cfg.Config.Entrypoint[0])
			info, err := os.Stat(entry)
			if err != nil || info.Mode()&0o111 == 0 {
				t.Fatalf("the entrypoint %s is not an executable in the layer: %v", cfg.Config.Entrypoint[0], err)
			}
			help, err := exec.Command(entry, "--help").CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			if !strings.Contains(string(help), wantHelp[img.Name]) {
				t.Errorf("%s --help printed no %s:\n%s", cfg.Config.Entrypoint[0], wantHelp[img.Name], help)
			}
			if interp := interpreter(t, entry); interp != "" {
				t.Errorf("the entrypoint is not a static binary: it needs %s", interp)
			}
		})
	}
}

// interpreter is the dynamic loader an ELF binary asks for; a static binary has none.
func interpreter(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

type dockerfile struct {
	entrypoint []string
	user       string
	labels     map[string]string
}

// parseDockerfile reads ENTRYPOINT (exec form), USER and LABEL of the final stage, joining lines
// continued with a backslash.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for cont := ""; s.Scan(); {
		line := strings.TrimSpace(s.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		lines, cont = append(lines, cont+line), ""
	}
	d := dockerfile{labels: map[string]string{}}
	for _, line := range lines {
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			d = dockerfile{labels: map[string]string{}} // a new stage
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT is not in exec form: %v", path, err)
			}
		case "USER":
			d.user = strings.TrimSpace(rest)
		case "LABEL":
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				d.labels[k] = strings.Trim(v, `"`)
			}
		}
	}
	return d
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	extract(t, f, dir)
}

// extract unpacks the tar stream r below dir.
func extract(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
