package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/identityclient"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/test/framework"
)

func newClient(id spiffe.ID, tokenPath string) *identityclient.Client {
	c, err := identityclient.New(identityclient.Config{
		Addr: cp.IdentityAddr, ServerName: framework.IdentityServerName, TrustAnchors: anchorsPEM,
		Identity: id.String(), TokenPath: tokenPath,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	return c
}

func p256() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	return k
}

var _ = Describe("The identity service", func() {
	It("certifies a workload as its ServiceAccount, for the configured lifetime, under the trust bundle", func() {
		id := workload("shop", "web")
		c := newClient(id, tokenFile(token(id, identity.Audience)))
		cert, err := c.Certify(ctx)
		Expect(err).NotTo(HaveOccurred())

		leaf := cert.Leaf
		Expect(leaf.URIs).To(HaveLen(1))
		Expect(leaf.URIs[0].String()).To(Equal("spiffe://cluster.local/ns/shop/sa/web"))
		Expect(leaf.NotAfter.Sub(leaf.NotBefore)).To(Equal(24*time.Hour+20*time.Second), "24h from the MeshConfig, backdated by the 20s clock skew allowance")
		Expect(leaf.NotAfter).To(BeTemporally("~", time.Now().Add(24*time.Hour), 5*time.Second))

		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			ic, err := x509.ParseCertificate(der)
			Expect(err).NotTo(HaveOccurred())
			inter.AddCert(ic)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred(), "the leaf verifies against the trust bundle")
		mc := &meshv1.MeshConfig{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc)).To(Succeed())
		Expect(identity.Fingerprint(chains[0][1])).To(Equal(mc.Status.Issuer.Fingerprint), "signed by the issuer MeshConfig reports")
	})

	Describe("refuses, with a clear status, and counts", func() {
		type refusal struct {
			request func() *pb.CertifyRequest
			code    codes.Code
			says    string
		}
		DescribeTable("a request",
			func(r refusal) {
				before := certifyCount(r.code.String())
				_, err := rawClient().Certify(ctx, r.request())
				st, ok := status.FromError(err)
				Expect(ok).To(BeTrue(), "a gRPC status: %v", err)
				Expect(st.Code()).To(Equal(r.code), st.Message())
				Expect(st.Message()).To(ContainSubstring(r.says))
				Expect(certifyCount(r.code.String())).To(Equal(before + 1))
			},
			Entry("for an identity that is not the token's", refusal{func() *pb.CertifyRequest {
				web, db := workload("bank", "web"), workload("bank", "db")
				return &pb.CertifyRequest{Identity: db.String(), Token: []byte(token(web, identity.Audience)), CertificateSigningRequest: csr(p256(), db.String())}
			}, codes.PermissionDenied, "authenticates system:serviceaccount:bank:web, which may not take the identity spiffe://cluster.local/ns/bank/sa/db"}),
			Entry("with an expired token", refusal{func() *pb.CertifyRequest {
				id := workload("expired", "web")
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(expired(token(id, identity.Audience))), CertificateSigningRequest: csr(p256(), id.String())}
			}, codes.Unauthenticated, "token rejected"}),
			Entry("with a token for another audience", refusal{func() *pb.CertifyRequest {
				id := workload("audience", "web")
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, "https://kubernetes.default.svc")), CertificateSigningRequest: csr(p256(), id.String())}
			}, codes.Unauthenticated, "token rejected"}),
			Entry("for a deleted ServiceAccount", refusal{func() *pb.CertifyRequest {
				id := workload("deleted", "web")
				tok := token(id, identity.Audience)
				Expect(k8s.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}})).To(Succeed())
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(tok), CertificateSigningRequest: csr(p256(), id.String())}
			}, codes.Unauthenticated, "token rejected"}),
			Entry("with a malformed CSR", refusal{func() *pb.CertifyRequest {
				id := workload("malformed", "web")
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, identity.Audience)), CertificateSigningRequest: []byte("-----BEGIN CERTIFICATE REQUEST-----")}
			}, codes.InvalidArgument, "certificate_signing_request: malformed"}),
			Entry("with a weak RSA key", refusal{func() *pb.CertifyRequest {
				id := workload("weak", "web")
				key, err := rsa.GenerateKey(rand.Reader, 1024)
				Expect(err).NotTo(HaveOccurred())
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, identity.Audience)), CertificateSigningRequest: csr(key, id.String())}
			}, codes.InvalidArgument, "RSA key of 1024 bits is too weak"}),
			Entry("whose CSR names another identity", refusal{func() *pb.CertifyRequest {
				id := workload("san", "web")
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, identity.Audience)), CertificateSigningRequest: csr(p256(), "spiffe://cluster.local/ns/san/sa/admin")}
			}, codes.InvalidArgument, "its only subject alternative name must be the URI spiffe://cluster.local/ns/san/sa/web"}),
			Entry("that is oversized", refusal{func() *pb.CertifyRequest {
				id := workload("big", "web")
				return &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, identity.Audience) + strings.Repeat("x", identity.MaxRequestBytes)), CertificateSigningRequest: csr(p256(), id.String())}
			}, codes.ResourceExhausted, "exceeds the limit of 16384"}),
		)

		It("fails closed when the TokenReview errors", func() {
			// A reviewer whose user may not create TokenReviews: the real API server answers 403.
			cfg := rest.CopyConfig(cluster.Config)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
			nobody, err := client.New(cfg, client.Options{})
			Expect(err).NotTo(HaveOccurred())
			ca := &identity.CA{}
			ca.SetIssuer(cp.Issuer())
			reg := prometheus.NewRegistry()
			svc, err := identity.NewService(ca, &identity.KubeTokenReviewer{Client: nobody}, identity.MeshConfigSettings(k8s), reg)
			Expect(err).NotTo(HaveOccurred())

			id := workload("closed", "web")
			_, err = svc.Certify(ctx, &pb.CertifyRequest{Identity: id.String(), Token: []byte(token(id, identity.Audience)), CertificateSigningRequest: csr(p256(), id.String())})
			Expect(status.Code(err)).To(Equal(codes.Unavailable))
			Expect(err.Error()).To(And(ContainSubstring("cannot be verified, so nothing is signed"), ContainSubstring("forbidden")))
			families, err := reg.Gather()
			Expect(err).NotTo(HaveOccurred())
			Expect(families).To(HaveLen(1))
			Expect(families[0].GetMetric()[0].GetLabel()[0].GetValue()).To(Equal("Unavailable"))
			Expect(families[0].GetMetric()[0].GetCounter().GetValue()).To(Equal(1.0))
		})
	})

	It("switches to the issuer cert-manager renews without failing a Certify", func() {
		By("giving the issuer a lifetime of two minutes, renewed 100s before it ends")
		mc := &meshv1.MeshConfig{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc)).To(Succeed())
		first := mc.Status.Issuer.Fingerprint
		mc.Spec.Identity.Issuer.Lifetime = &metav1.Duration{Duration: 2 * time.Minute}
		mc.Spec.Identity.Issuer.RenewBefore = &metav1.Duration{Duration: 100 * time.Second}
		Expect(k8s.Update(ctx, mc)).To(Succeed())

		By("certifying continuously while cert-manager renews it")
		id := workload("renew", "web")
		c := newClient(id, tokenFile(token(id, identity.Audience)))
		issuers := map[string]bool{}
		var calls, failures atomic.Int32
		deadline := time.Now().Add(100 * time.Second)
		for time.Now().Before(deadline) && len(issuers) < 3 {
			cert, err := c.Certify(ctx)
			calls.Add(1)
			if err != nil {
				failures.Add(1)
				GinkgoWriter.Println("Certify failed:", err)
				continue
			}
			issuer, err := x509.ParseCertificate(cert.Certificate[1])
			Expect(err).NotTo(HaveOccurred())
			Expect(cert.Leaf.CheckSignatureFrom(issuer)).To(Succeed(), "the leaf chains to the issuer sent with it")
			issuers[identity.Fingerprint(issuer)] = true
			time.Sleep(50 * time.Millisecond)
		}
		GinkgoWriter.Printf("%d Certify calls saw %d issuers\n", calls.Load(), len(issuers))
		Expect(failures.Load()).To(BeZero())
		Expect(len(issuers)).To(BeNumerically(">=", 3), "the first issuer and at least two renewals")
		Expect(issuers).To(HaveKey(first))

		By("reporting the switch as IssuerUpdated events on the MeshConfig")
		events := &eventsv1.EventList{}
		Expect(k8s.List(ctx, events)).To(Succeed())
		n := 0
		for _, e := range events.Items {
			if e.Regarding.Kind == "MeshConfig" && e.Reason == identity.ReasonIssuerUpdated {
				n++
			}
		}
		Expect(n).To(BeNumerically(">=", 3))
	})
})
