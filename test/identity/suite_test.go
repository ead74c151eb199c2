// Package identity_test checks the identity service end to end: cert-manager's real controllers issue
// the trust chain, the control plane serves Certify over TLS, and the real API server reviews tokens.
package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/framework"
)

var (
	ctx     = context.Background()
	cluster *framework.Cluster
	cp      *framework.ControlPlane
	k8s     client.Client
	// anchorsPEM is the trust bundle proxies are given.
	anchorsPEM []byte
	roots      *x509.CertPool
)

func TestIdentity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Identity Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cluster, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	k8s = cluster.Client
	stopCertManager, err := framework.StartCertManager(cluster)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stopCertManager)
	cp, err = framework.StartControlPlane(cluster.Config)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)

	By("applying the MeshConfig sample to an empty cluster")
	root, err := localcluster.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	_, err = cluster.Kubectl(ctx, nil, "apply", "-f", filepath.Join(root, "config", "samples", "mesh_v1alpha1_meshconfig.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(g Gomega) {
		mc := &meshv1.MeshConfig{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady)).To(BeTrue())
	}, time.Minute, 100*time.Millisecond).Should(Succeed())

	bundle := &corev1.ConfigMap{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle)).To(Succeed())
	anchorsPEM = []byte(bundle.Data[meshv1.TrustBundleKey])
	roots = x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(anchorsPEM)).To(BeTrue())
})

// rawClient talks to Certify directly, for requests no well-behaved client would send.
func rawClient() pb.IdentityClient {
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: framework.IdentityServerName, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(cp.IdentityAddr, grpc.WithTransportCredentials(creds))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return pb.NewIdentityClient(conn)
}
