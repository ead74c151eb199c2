package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/identityclient"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// certifyWorkload does what a proxy does at start: with its ServiceAccount's token, it asks the
// identity service for a certificate, and checks it against the trust bundle.
func (d *demo) certifyWorkload(ctx context.Context) error {
	const ns, sa = "default", "web"
	d.say(fmt.Sprintf("A workload running as ServiceAccount %s/%s asks the identity service (%s) for its certificate", ns, sa, d.identityAddr))
	c := d.cluster.Client
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
		return err
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)}}
	if err := c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}, tr); err != nil {
		return fmt.Errorf("requesting a token for %s/%s: %w", ns, sa, err)
	}
	tokenPath := filepath.Join(d.Dir, "web.token")
	if err := os.WriteFile(tokenPath, []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	bundle := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return err
	}
	id := spiffe.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
	ic, err := identityclient.New(identityclient.Config{
		Addr: d.identityAddr, ServerName: inject.ServiceHost(inject.IdentityService, Namespace),
		TrustAnchors: []byte(bundle.Data[meshv1.TrustBundleKey]), Identity: id.String(), TokenPath: tokenPath,
	})
	if err != nil {
		return err
	}
	defer ic.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cert, err := ic.Certify(ctx)
	if err != nil {
		return err
	}
	leaf := cert.Leaf
	d.printf("    certificate for %s\n    issued by %q, valid %s until %s, verified against the trust bundle\n",
		leaf.URIs[0], leaf.Issuer.CommonName, leaf.NotAfter.Sub(leaf.NotBefore).Round(time.Second), leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
