// Package identity_test checks the identity service end to end: cert-manager's real controllers issue
// the trust chain, the control plane serves Certify over TLS, and the real API server reviews tokens.
package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
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
	By("starting cert-manager and the control plane, and applying the MeshConfig sample to an empty cluster")
	mesh, err := framework.StartMesh(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mesh.Stop)
	cluster, cp, k8s, anchorsPEM, roots = mesh.Cluster, mesh.ControlPlane, mesh.Client, mesh.Anchors, mesh.Roots
})

// rawClient talks to Certify directly, for requests no well-behaved client would send.
func rawClient() pb.IdentityClient {
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: framework.IdentityServerName, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(cp.IdentityAddr, grpc.WithTransportCredentials(creds))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return pb.NewIdentityClient(conn)
}
