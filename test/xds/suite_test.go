// Package xds_test checks the control plane's configuration push against the real API server:
// what Services and EndpointSlices compile to, what reaches a client and when, and who may ask.
package xds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/test/framework"
)

var (
	ctx   = context.Background()
	cp    *framework.ControlPlane
	k8s   client.Client
	roots *x509.CertPool
)

func TestXDS(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "xDS Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	mesh, err := framework.StartMesh(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mesh.Stop)
	cp, k8s, roots = mesh.ControlPlane, mesh.Client, mesh.Roots
})

// dial connects to the xDS service with a certificate for id.
func dial(id spiffe.ID) discovery.AggregatedDiscoveryServiceClient {
	cert, err := cp.WorkloadCertificate(id)
	Expect(err).NotTo(HaveOccurred())
	creds := credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: framework.XDSServerName, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
	})
	conn, err := grpc.NewClient(cp.XDSAddr, grpc.WithTransportCredentials(creds))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return discovery.NewAggregatedDiscoveryServiceClient(conn)
}
