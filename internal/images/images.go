// Package images builds Skein's container images without a Docker daemon: each is one layer of
// static Go binaries (CGO_ENABLED=0) with the entrypoint, user and labels its Dockerfile sets,
// written as an OCI archive (an OCI image layout in a tar file, as `podman load` and
// `skopeo copy oci-archive:` read it). `make images` runs it.
package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image says how one image is made.
type Image struct {
	// Name is the image's name, and its archive's: <Name>.tar.
	Name string
	// Dockerfile builds the same image with a Docker daemon, relative to the source root.
	Dockerfile string
	// Package is the Go package of the binary, built to Binary (an absolute path in the image).
	Package, Binary string
	// User is the user the image runs as (uid:gid): distroless's nonroot.
	User string
}

// Images are Skein's images.
var Images = []Image{
	{Name: "skein-controller", Dockerfile: "Dockerfile", Package: ".", Binary: "/skein-controller", User: NonRoot},
	{Name: "skein-proxy", Dockerfile: "proxy/Dockerfile", Package: "./proxy/cmd/skein-proxy", Binary: "/skein-proxy", User: NonRoot},
}

// NonRoot is distroless's nonroot user and group, which the Dockerfiles run as.
const NonRoot = "65532:65532"

// Source labels every image with where it comes from.
const Source = "https://github.com/skeinmesh/skein"

// Labels are an image's OCI labels.
func (i Image) Labels() map[string]string {
	return map[string]string{"org.opencontainers.image.title": i.Name, "org.opencontainers.image.source": Source}
}

// Build builds img from the source tree at root into outDir/<Name>.tar and returns that path.
func Build(root, outDir string, img Image) (string, error) {
	work, err := os.MkdirTemp("", "skein-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, filepath.Base(img.Binary))
	// grpcnotrace leaves out grpc's request tracing (golang.org/x/net/trace, which links
	// html/template), never turned on here: 3 MB of binary, 1.3 MB resident in every proxy.
	cmd := exec.Command("go", "build", "-trimpath", "-tags=grpcnotrace", "-ldflags=-s -w", "-o", bin, img.Package)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s for %s: %w\n%s", img.Package, img.Name, err, out)
	}
	layer, err := binaryLayer(bin, img.Binary)
	if err != nil {
		return "", err
	}
	image, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "go build " + img.Package, Created: v1.Time{Time: epoch}}})
	if err != nil {
		return "", err
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{img.Binary}
	cfg.Config.User = img.User
	cfg.Config.Labels = img.Labels()
	if image, err = mutate.ConfigFile(image, cfg); err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, img.Name+".tar")
	return out, writeOCIArchive(image, img.Name, out)
}

// epoch dates the images so that a build of the same binaries is the same image.
var epoch = time.Unix(0, 0).UTC()

// binaryLayer is a layer holding one executable at path.
func binaryLayer(local, path string) (v1.Layer, error) {
	data, err := os.ReadFile(local)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: path[1:], Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// writeOCIArchive writes image as an OCI image layout, tagged name:latest, packed in a tar file.
func writeOCIArchive(image v1.Image, name, out string) error {
	dir, err := os.MkdirTemp("", "skein-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(image, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": name + ":latest"})); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = filepath.ToSlash(rel), epoch, 0, 0, "", ""
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	return errors.Join(err, tw.Close(), f.Close())
}
