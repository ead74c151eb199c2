package certmanager_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/test/framework"
)

const (
	issueTimeout = 60 * time.Second
	poll         = 250 * time.Millisecond
)

var _ = Describe("cert-manager", func() {
	It("issues a self-signed CA, and from a CA Issuer on it certificates that verify against it", func() {
		anchorIssuer := selfSignedClusterIssuer("anchor-selfsigned")
		Eventually(issuerReady).WithArguments(anchorIssuer).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())

		By("issuing the trust anchor, a CA certificate, from the self-signed ClusterIssuer")
		start := time.Now()
		anchor := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "trust-anchor", Namespace: framework.SystemNamespace},
			Spec: cmapi.CertificateSpec{
				IsCA:       true,
				CommonName: "root.skein.test",
				SecretName: "trust-anchor",
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: anchorIssuer.Name, Kind: cmapi.ClusterIssuerKind},
			},
		}
		Expect(k8s.Create(ctx, anchor)).To(Succeed())
		Eventually(certificateReady).WithArguments(anchor).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())
		AddReportEntry("CA certificate Ready after", time.Since(start).Round(time.Millisecond).String())
		caCert, _ := keyPair(anchor)
		Expect(caCert.IsCA).To(BeTrue())
		Expect(caCert.Subject.CommonName).To(Equal("root.skein.test"))
		Expect(caCert.CheckSignatureFrom(caCert)).To(Succeed(), "the anchor is self-signed")
		Expect(caCert.PublicKey).To(BeAssignableToTypeOf(&ecdsa.PublicKey{}))
		Expect(caCert.PublicKey.(*ecdsa.PublicKey).Curve).To(Equal(elliptic.P256()))

		By("backing a CA Issuer with the anchor's Secret")
		caIssuer := &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "skein-ca", Namespace: framework.SystemNamespace},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
				CA: &cmapi.CAIssuer{SecretName: anchor.Spec.SecretName},
			}},
		}
		Expect(k8s.Create(ctx, caIssuer)).To(Succeed())
		Eventually(issuerReady).WithArguments(caIssuer).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())

		By("issuing a leaf certificate from the CA Issuer")
		start = time.Now()
		const spiffeID = "spiffe://skein.test/ns/default/sa/web"
		leaf := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: framework.SystemNamespace},
			Spec: cmapi.CertificateSpec{
				SecretName: "web-tls",
				DNSNames:   []string{"web.default.svc"},
				URIs:       []string{spiffeID},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: caIssuer.Name, Kind: cmapi.IssuerKind},
			},
		}
		Expect(k8s.Create(ctx, leaf)).To(Succeed())
		Eventually(certificateReady).WithArguments(leaf).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())
		AddReportEntry("leaf certificate Ready after", time.Since(start).Round(time.Millisecond).String())

		leafCert, secret := keyPair(leaf)
		Expect(secret.Data[cmmeta.TLSCAKey]).To(Equal(pemCertificate(caCert)), "ca.crt is the anchor")
		Expect(leafCert.IsCA).To(BeFalse())
		Expect(leafCert.DNSNames).To(ConsistOf("web.default.svc"))
		Expect(leafCert.URIs).To(HaveLen(1))
		Expect(leafCert.URIs[0].String()).To(Equal(spiffeID))
		roots := x509.NewCertPool()
		roots.AddCert(caCert)
		_, err := leafCert.Verify(x509.VerifyOptions{
			Roots:     roots,
			DNSName:   "web.default.svc",
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		Expect(err).NotTo(HaveOccurred(), "the leaf verifies against the anchor")
	})

	It("renews a certificate before it expires", func() {
		// cert-manager's webhook would refuse a duration under an hour, but it is not running: the
		// controllers themselves take any duration, which lets renewal happen within a test.
		issuer := selfSignedClusterIssuer("renewal-selfsigned")
		Eventually(issuerReady).WithArguments(issuer).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())
		crt := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "short-lived", Namespace: framework.SystemNamespace},
			Spec: cmapi.CertificateSpec{
				CommonName:  "short-lived.skein.test",
				SecretName:  "short-lived",
				Duration:    &metav1.Duration{Duration: 2 * time.Minute},
				RenewBefore: &metav1.Duration{Duration: 100 * time.Second},
				PrivateKey:  &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:   cmmeta.IssuerReference{Name: issuer.Name, Kind: cmapi.ClusterIssuerKind},
			},
		}
		Expect(k8s.Create(ctx, crt)).To(Succeed())
		Eventually(certificateReady).WithArguments(crt).WithTimeout(issueTimeout).WithPolling(poll).Should(BeTrue())
		first, _ := keyPair(crt)
		Expect(first.NotAfter.Sub(first.NotBefore)).To(Equal(2 * time.Minute))
		Expect(crt.Status.RenewalTime).NotTo(BeNil())
		Expect(crt.Status.RenewalTime.Time).To(BeTemporally("~", first.NotAfter.Add(-100*time.Second), time.Second))

		By(fmt.Sprintf("waiting for the renewal due at %s", crt.Status.RenewalTime.Format(time.TimeOnly)))
		start := time.Now()
		Eventually(func(g Gomega) {
			g.Expect(certificateReady(crt)).To(BeTrue())
			renewed, _ := keyPairOf(g, crt)
			g.Expect(renewed.SerialNumber).NotTo(Equal(first.SerialNumber))
			g.Expect(renewed.NotBefore).To(BeTemporally(">", first.NotBefore))
			// cert-manager writes the Secret before it records the new revision in the status.
			g.Expect(crt.Status.Revision).NotTo(BeNil())
			g.Expect(*crt.Status.Revision).To(BeNumerically(">=", 2))
		}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
		AddReportEntry("renewed after", time.Since(start).Round(time.Millisecond).String())
	})
})

// selfSignedClusterIssuer creates a self-signed ClusterIssuer.
func selfSignedClusterIssuer(name string) *cmapi.ClusterIssuer {
	issuer := &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
			SelfSigned: &cmapi.SelfSignedIssuer{},
		}},
	}
	ExpectWithOffset(1, k8s.Create(ctx, issuer)).To(Succeed())
	return issuer
}

// issuerReady refreshes an Issuer or ClusterIssuer and reports whether it is Ready.
func issuerReady(issuer cmapi.GenericIssuer) (bool, error) {
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(issuer), issuer); err != nil {
		return false, err
	}
	for _, c := range issuer.GetStatus().Conditions {
		if c.Type == cmapi.IssuerConditionReady {
			return c.Status == cmmeta.ConditionTrue, nil
		}
	}
	return false, nil
}

// certificateReady refreshes crt and reports whether it is Ready and up to date.
func certificateReady(crt *cmapi.Certificate) (bool, error) {
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(crt), crt); err != nil {
		return false, err
	}
	for _, c := range crt.Status.Conditions {
		if c.Type == cmapi.CertificateConditionReady {
			return c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == crt.Generation, nil
		}
	}
	return false, nil
}

// keyPair reads crt's Secret and returns its certificate, after checking that the Secret holds a
// certificate, the matching private key and a CA certificate.
func keyPair(crt *cmapi.Certificate) (*x509.Certificate, *corev1.Secret) {
	return keyPairOf(Default, crt)
}

func keyPairOf(g Gomega, crt *cmapi.Certificate) (*x509.Certificate, *corev1.Secret) {
	secret := &corev1.Secret{}
	g.ExpectWithOffset(2, k8s.Get(ctx, client.ObjectKey{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, secret)).To(Succeed())
	g.ExpectWithOffset(2, secret.Data).To(HaveKey(corev1.TLSCertKey))
	g.ExpectWithOffset(2, secret.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
	g.ExpectWithOffset(2, secret.Data).To(HaveKey(cmmeta.TLSCAKey))
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	g.ExpectWithOffset(2, err).NotTo(HaveOccurred(), "tls.key matches tls.crt")
	return pair.Leaf, secret
}

func pemCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}
