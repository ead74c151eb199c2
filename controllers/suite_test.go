package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/skeinmesh/skein/test/framework"
)

// The controllers run against a real API server (kube-apiserver and etcd from `make test-bins`).
var (
	cluster *framework.Cluster
	k8s     client.Client
	ctx     = context.Background()
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cluster, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	k8s = cluster.Client
	DeferCleanup(cluster.Stop)

	stopCertManager, err := framework.StartCertManager(cluster)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stopCertManager)

	cp, err := framework.StartControlPlane(cluster)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
})
