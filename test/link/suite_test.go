// Package link_test runs the Link controller of cluster A (west) against a second API server, cluster
// B (east), with credentials made by `skein multicluster link` and a real TLS gateway stand-in.
package link_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

var (
	ctx  = context.Background()
	west *framework.Mesh
	east *framework.Cluster
	// stopEast stops east's webhooks and API server, once.
	stopEast    func() error
	eastStopped bool
	gw          *gateway
	// skeinCLI is the skein command, built from cmd/skein.
	skeinCLI string
)

func TestLink(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Link Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	skeinCLI = netns.Build(GinkgoT(), "github.com/skeinmesh/skein/cmd/skein")
	west, err = framework.StartMesh(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(west.Stop)

	east, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	// east runs no control plane, but its MeshConfig passes through the admission webhooks.
	stopWebhooks, err := framework.StartWebhooks(east)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() error { return stopEast() })

	stopEast = func() error {
		if eastStopped {
			return nil
		}
		eastStopped = true
		return errors.Join(stopWebhooks(), east.Stop())
	}

	gw, err = startGateway(west.ControlPlane)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gw.stop)

	for _, c := range []*framework.Cluster{west.Cluster, east} {
		for _, ns := range []string{framework.SystemNamespace, "shop"} {
			err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if err != nil && !isAlreadyExists(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		}
	}
	Expect(east.Client.Create(ctx, &meshv1.MeshConfig{
		ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName},
		Spec:       meshv1.MeshConfigSpec{Multicluster: meshv1.MulticlusterSpec{Enabled: true, GatewayPort: gw.tlsPort}},
	})).To(Succeed())
})

// gatewayIdentity is east's gateway's identity; both clusters have the trust domain cluster.local.
var gatewayIdentity = spiffe.ID{TrustDomain: "cluster.local", Namespace: framework.SystemNamespace, ServiceAccount: meshv1.GatewayName}

// gateway stands in for east's gateway: it accepts mTLS, presenting a certificate that west's
// identity service signed (the two clusters share a trust bundle), and answers /ready on its admin port.
type gateway struct {
	// host is where it listens: not loopback, which an EndpointSlice may not hold.
	host               string
	tlsPort, adminPort int32
	cert               atomic.Pointer[tls.Certificate]
	ready              atomic.Bool
	tlsLis             net.Listener
	admin              *http.Server
}

func startGateway(cp *framework.ControlPlane) (*gateway, error) {
	g := &gateway{}
	if err := g.presentAs(cp, gatewayIdentity); err != nil {
		return nil, err
	}
	g.ready.Store(true)
	host, err := hostIP()
	if err != nil {
		return nil, err
	}
	g.host = host
	lis, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), mtls.Server(func() *tls.Certificate { return g.cert.Load() }, west.Roots))
	if err != nil {
		return nil, err
	}
	g.tlsLis = lis
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				// The prober sends no client certificate: the server side fails, as the real one does.
				_ = conn.(*tls.Conn).Handshake()
				_ = conn.Close()
			}()
		}
	}()
	adminLis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, errors.Join(err, lis.Close())
	}
	g.admin = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !g.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})}
	go func() { _ = g.admin.Serve(adminLis) }()
	g.tlsPort = port(lis.Addr())
	g.adminPort = port(adminLis.Addr())
	return g, nil
}

func (g *gateway) presentAs(cp *framework.ControlPlane, id spiffe.ID) error {
	cert, err := cp.WorkloadCertificate(id)
	if err != nil {
		return err
	}
	g.cert.Store(cert)
	return nil
}

func (g *gateway) stop() error { return errors.Join(g.tlsLis.Close(), g.admin.Close()) }

// hostIP is the host's first IPv4 address that is neither loopback nor link-local.
func hostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("the host has no IPv4 address besides loopback for the gateway stand-in")
}

func port(a net.Addr) int32 {
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return int32(n)
}
