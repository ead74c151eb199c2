package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skeinmesh/skein/internal/spiffe"
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

// expired re-signs a real token, with the API server's own key, as if it had expired an hour ago:
// the token the API server would have issued two hours before.
func expired(tok string) string {
	parts := strings.Split(tok, ".")
	Expect(parts).To(HaveLen(3))
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	claims := map[string]any{}
	Expect(json.Unmarshal(payload, &claims)).To(Succeed())
	now := time.Now()
	claims["iat"], claims["nbf"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	payload, err = json.Marshal(claims)
	Expect(err).NotTo(HaveOccurred())
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)

	keyPEM, err := os.ReadFile(cluster.ServiceAccountSigningKeyFile())
	Expect(err).NotTo(HaveOccurred())
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	ec, ok := key.(*ecdsa.PrivateKey)
	Expect(ok).To(BeTrue(), "the API server's signing key is ECDSA (ES256)")
	digest := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, ec, digest[:])
	Expect(err).NotTo(HaveOccurred())
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
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
