package identity_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/test/framework"
)

// workload makes a namespace-scoped ServiceAccount and returns its identity.
func workload(ns, sa string) spiffe.ID {
	_ = k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})).To(Succeed())
	return spiffe.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
}

// token asks the API server for a token of the ServiceAccount behind id, for audience.
func token(id spiffe.ID, audience string) string {
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}}
	Expect(k8s.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	return tr.Status.Token
}

// tokenFile writes a token where a proxy would read it.
func tokenFile(tok string) string {
	path := filepath.Join(GinkgoT().TempDir(), "token")
	Expect(os.WriteFile(path, []byte(tok), 0o600)).To(Succeed())
	return path
}

// expired is tok as if it had expired an hour ago (see framework.ExpiredToken).
func expired(tok string) string {
	out, err := framework.ExpiredToken(cluster, tok)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// csr makes a certificate request for the given URIs with key.
func csr(key crypto.Signer, uris ...string) []byte {
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		id, err := spiffe.Parse(u)
		Expect(err).NotTo(HaveOccurred())
		tmpl.URIs = append(tmpl.URIs, id.URL())
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	Expect(err).NotTo(HaveOccurred())
	return der
}

// certifyCount reads identity_certify_requests_total{code} from the control plane's metrics.
func certifyCount(code string) float64 {
	families, err := cp.Metrics.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "identity_certify_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "code") == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
