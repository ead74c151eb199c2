// Package grpcxds_test checks that Skein's xDS resources serve proxyless gRPC: a grpc-go client
// that dials "xds:///<service authority>" with a bootstrap file pointing at the control plane
// reaches the service's endpoints, and follows changes to them, through grpc-go's own xDS client.
// Everything is real: the API server, cert-manager, the control plane, and the client and servers,
// which run as processes, the servers in network-namespace pods.
package grpcxds_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/skeinmesh/skein/test/framework"
)

var (
	ctx = context.Background()
	cp  *framework.ControlPlane
	k8s client.Client
	// anchorsFile holds the trust bundle, which xDS clients verify the control plane against.
	anchorsFile string
	// proxyless is the test application's binary.
	proxyless string
)

func TestGRPCXDS(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Proxyless gRPC Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	proxyless, err = gexec.Build("github.com/skeinmesh/skein/test/grpcxds/proxyless")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gexec.CleanupBuildArtifacts)

	mesh, err := framework.StartMesh(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mesh.Stop)
	cp, k8s = mesh.ControlPlane, mesh.Client
	anchorsFile = filepath.Join(GinkgoT().TempDir(), "anchors.pem")
	Expect(os.WriteFile(anchorsFile, mesh.Anchors, 0o600)).To(Succeed())
})
