// Package localcluster runs a real Kubernetes API server (kube-apiserver and etcd, built by
// `make test-bins`) on this machine with Skein's CRDs installed. The tests and `skein demo` both
// stand on it; several can run at once, one per simulated cluster.
package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/skeinmesh/skein/internal/scheme"
)

const modulePath = "github.com/skeinmesh/skein"

// Cluster is a running API server.
type Cluster struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a controller-runtime client over Config with Skein's scheme.
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl and other processes.
	Kubeconfig string
	// AssetsDir holds the kube-apiserver, etcd and kubectl binaries in use.
	AssetsDir string
	// Webhook is where the admission webhooks must be served; nil when none are registered.
	Webhook *WebhookServing

	env *envtest.Environment
	dir string
	// tempDir is set when dir was made by Start, which then removes it on Stop.
	tempDir bool
}

// Options tunes a Cluster.
type Options struct {
	// CRDDirs are extra directories of CRDs to install beside Skein's.
	CRDDirs []string
	// Dir is where the kubeconfig is written; a temporary directory when empty.
	Dir string
	// APIServerArgs are extra kube-apiserver flags, as name=value.
	APIServerArgs map[string]string
	// Webhooks registers Skein's admission webhooks (config/webhook) with the API server, pointed
	// at a local address with a serving certificate made for it: see Cluster.Webhook.
	Webhooks bool
}

// WebhookServing is where the API server calls the admission webhooks of a Cluster started with
// Options.Webhooks, and the serving certificate it trusts there (tls.crt and tls.key in CertDir).
type WebhookServing struct {
	Host    string
	Port    int
	CertDir string
}

// Wait waits up to 30 seconds for something to accept connections at w, so that the API server's
// first call to the webhooks does not fail.
func (w *WebhookServing) Wait(ctx context.Context) error {
	addr := net.JoinHostPort(w.Host, strconv.Itoa(w.Port))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the admission webhooks are not served at %s: %w", addr, err)
		}
	}
}

// Start starts an API server and installs the CRDs.
func Start(opts Options) (*Cluster, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "skein-cluster-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "config", "crd", "bases")}, opts.CRDDirs...),
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme.New(),
	}
	if opts.Webhooks {
		env.WebhookInstallOptions.Paths = []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}
	}
	apiServer := env.ControlPlane.GetAPIServer()
	for name, value := range opts.APIServerArgs {
		apiServer.Configure().Set(name, value)
	}
	cfg, err := env.Start()
	if err != nil {
		// Start leaves the API server running when installing the CRDs fails.
		return nil, errors.Join(fmt.Errorf("starting the API server from %s: %w", assets, err), env.Stop())
	}
	c := &Cluster{Config: cfg, AssetsDir: assets, env: env, dir: dir, tempDir: opts.Dir == ""}
	if w := env.WebhookInstallOptions; opts.Webhooks {
		c.Webhook = &WebhookServing{Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return c, nil
}

// Stop stops the API server and etcd.
func (c *Cluster) Stop() error {
	err := c.env.Stop()
	if c.tempDir {
		err = errors.Join(err, os.RemoveAll(c.dir))
	}
	return err
}

// Kubectl runs the real kubectl against the cluster and returns what it printed on stdout; on
// failure, the error holds what it printed on stderr.
func (c *Cluster) Kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.AssetsDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %v: %w: %s", args, err, stderr.String())
	}
	return stdout.String(), nil
}

// RepoRoot finds the root of Skein's source tree from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside Skein's source tree: no go.mod for " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

var kubernetesVersion = regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`)

// AssetsDir is where `make test-bins` puts kube-apiserver, etcd and kubectl: KUBEBUILDER_ASSETS when
// set, else bin/k8s/<the Kubernetes version pinned in hack/tools/go.mod>.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		mod, err := os.ReadFile(filepath.Join(root, "hack", "tools", "go.mod"))
		if err != nil {
			return "", err
		}
		m := kubernetesVersion.FindSubmatch(mod)
		if m == nil {
			return "", errors.New("hack/tools/go.mod does not pin k8s.io/kubernetes")
		}
		dir = filepath.Join(root, "bin", "k8s", string(m[1]))
	}
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s is missing from %s: run `make test-bins` to build it", bin, dir)
		}
	}
	return dir, nil
}

// ServiceAccountSigningKeyFile is the PEM key the API server signs ServiceAccount tokens with; tests
// use it to make tokens the API server itself would have made, expired ones included.
func (c *Cluster) ServiceAccountSigningKeyFile() string {
	return filepath.Join(c.env.ControlPlane.APIServer.CertDir, "sa-signer.key")
}
