package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
)

// binDirPrefix starts the names of the directories Build makes in os.TempDir, followed by the
// PID, so that the next NewNetwork can remove those of a test that crashed.
const binDirPrefix = "skein-netns-bin-"

// ProxyInitPackage is the init container's command.
const ProxyInitPackage = "github.com/skeinmesh/skein/proxy/cmd/proxy-init"

// BuildProxyInit builds proxy-init for the test and returns its path.
func BuildProxyInit(t T) string {
	t.Helper()
	return Build(t, ProxyInitPackage)
}

// Build builds the main package pkg (an import path of this module, or a directory) into a
// directory that every user can read, since a pod's processes may run as an unprivileged user,
// and returns the binary's path. The directory is removed when t ends.
func Build(t T, pkg string) string {
	t.Helper()
	// t.TempDir is private to root, which would keep a process running as the proxy's user from
	// executing anything in it.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, path.Base(pkg))
	// go test puts its own toolchain first in the PATH of the tests it runs. Built as images are
	// (internal/images, proxy/Dockerfile): without cgo, as a proxy linked to libc maps it too, 1.5 MB
	// more resident; without grpc's request tracing, 1.3 MB more.
	cmd := exec.Command("go", "build", "-tags=grpcnotrace", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return bin
}
