// Package expansion brings workloads outside Kubernetes into the mesh: it makes what a host needs to
// run skein-proxy as an ExternalWorkload (`skein external-workload bootstrap`).
package expansion

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/iptables"
)

// ProxyUID is the user skein-proxy runs as on the host; proxy-init exempts it from the redirect.
const ProxyUID = iptables.DefaultProxyUID

// Options say which workload to bootstrap and how its host reaches the control plane.
type Options struct {
	Name, Namespace string
	// ControlPlaneNamespace holds the trust bundle; its services' certificates name it.
	ControlPlaneNamespace string
	// IdentityAddr and XDSAddr are host:port where the host reaches the identity and xDS services.
	IdentityAddr, XDSAddr string
	// ConfigDir is where the files will be on the host.
	ConfigDir string
	// TokenTTL is how long the token is valid; the proxy needs it to renew its certificate.
	TokenTTL time.Duration
}

// Bundle is what a host needs, file name to contents.
type Bundle map[string]string

// Files of a Bundle.
const (
	EnvFile      = "skein-proxy.env"
	TokenFile    = "token"
	AnchorsFile  = "trust-anchors.pem"
	IPTablesFile = "proxy-init.sh"
	UnitFile     = "skein-proxy.service"
)

// Bootstrap makes the Bundle for an ExternalWorkload. Its token is for the workload's ServiceAccount
// and bound to a Secret labelled with the workload, which the ExternalWorkload controller deletes
// with the workload: the token, and so the workload's identity, dies with it.
func Bootstrap(ctx context.Context, c client.Client, o Options) (Bundle, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	ew := &meshv1.ExternalWorkload{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Name}, ew); err != nil {
		return nil, fmt.Errorf("reading ExternalWorkload %s/%s: %w", o.Namespace, o.Name, err)
	}
	id, err := spiffe.Parse(ew.Spec.MeshTLS.Identity)
	if err != nil {
		return nil, fmt.Errorf("ExternalWorkload %s/%s: spec.meshTLS.identity: %w", o.Namespace, o.Name, err)
	}
	if id.Namespace != ew.Namespace {
		return nil, fmt.Errorf("ExternalWorkload %s/%s: spec.meshTLS.identity %s is for namespace %s; a workload's token can only be bound in its own namespace",
			o.Namespace, o.Name, id, id.Namespace)
	}
	bundle := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.ControlPlaneNamespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return nil, fmt.Errorf("reading the trust bundle %s/%s (is the mesh installed and Ready?): %w", o.ControlPlaneNamespace, meshv1.TrustBundleName, err)
	}
	token, err := boundToken(ctx, c, ew, id, o.TokenTTL)
	if err != nil {
		return nil, err
	}
	return Bundle{
		EnvFile:      o.env(ew, id),
		TokenFile:    token,
		AnchorsFile:  bundle.Data[meshv1.TrustBundleKey],
		IPTablesFile: fmt.Sprintf("#!/bin/sh\n# Redirects the host's TCP through skein-proxy, except the proxy's own (uid %d).\nexec proxy-init --proxy-uid %d \"$@\"\n", ProxyUID, ProxyUID),
		UnitFile:     o.unit(),
	}, nil
}

func (o Options) check() error {
	var errs []error
	for flag, v := range map[string]string{"--identity-addr": o.IdentityAddr, "--xds-addr": o.XDSAddr} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required: the host:port where the host reaches the control plane's %s service", flag, strings.TrimSuffix(strings.TrimPrefix(flag, "--"), "-addr")))
		}
	}
	if !filepath.IsAbs(o.ConfigDir) {
		errs = append(errs, fmt.Errorf("--config-dir %q must be an absolute path", o.ConfigDir))
	}
	if o.TokenTTL < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--token-ttl %s is too short: the API server issues tokens for 10m or more", o.TokenTTL))
	}
	return errors.Join(errs...)
}

// boundToken requests a token for id's ServiceAccount bound to the workload's bootstrap Secret,
// made if missing.
func boundToken(ctx context.Context, c client.Client, ew *meshv1.ExternalWorkload, id spiffe.ID, ttl time.Duration) (string, error) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ew.Namespace, Name: ew.Name + "-bootstrap",
		Labels: map[string]string{meshv1.ExternalWorkloadLabel: ew.Name}}}
	if err := c.Create(ctx, secret); apierrors.IsAlreadyExists(err) {
		err = c.Get(ctx, client.ObjectKeyFromObject(secret), secret)
		if err != nil {
			return "", err
		}
	} else if err != nil {
		return "", fmt.Errorf("creating the bootstrap Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}}
	seconds := int64(ttl / time.Second)
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{identity.Audience}, ExpirationSeconds: &seconds,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID},
	}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	return tr.Status.Token, nil
}

// env is the proxy's environment: the same variables the injector gives a pod's proxy.
func (o Options) env(ew *meshv1.ExternalWorkload, id spiffe.ID) string {
	vars := [][2]string{
		{"SKEIN_IDENTITY", id.String()},
		{"SKEIN_IDENTITY_ADDR", o.IdentityAddr},
		{"SKEIN_IDENTITY_SERVER_NAME", inject.ServiceHost(inject.IdentityService, o.ControlPlaneNamespace)},
		{"SKEIN_XDS_ADDR", o.XDSAddr},
		{"SKEIN_XDS_SERVER_NAME", inject.ServiceHost(inject.XDSService, o.ControlPlaneNamespace)},
		{"SKEIN_NODE_ID", xdsnames.NodeID(ew.Name, ew.Namespace)},
		{"SKEIN_TOKEN_PATH", filepath.Join(o.ConfigDir, TokenFile)},
		{"SKEIN_TRUST_ANCHORS", "@" + filepath.Join(o.ConfigDir, AnchorsFile)},
	}
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", v[0], v[1])
	}
	return b.String()
}

func (o Options) unit() string {
	return fmt.Sprintf(`[Unit]
Description=Skein proxy: this host's membership of the mesh
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=%s
# proxy-init needs root; "+" runs it so. The proxy runs as the user proxy-init exempts.
ExecStartPre=+/bin/sh %s
ExecStart=/usr/local/bin/skein-proxy
User=%d
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`, filepath.Join(o.ConfigDir, EnvFile), filepath.Join(o.ConfigDir, IPTablesFile), ProxyUID)
}

// Write puts the bundle's files in dir, the token and the environment readable by their owner only.
func (b Bundle) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range b {
		mode := os.FileMode(0o644)
		switch name {
		case TokenFile:
			mode = 0o600
		case IPTablesFile:
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), mode); err != nil {
			return err
		}
	}
	return nil
}
