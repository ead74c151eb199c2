package framework

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/mtls"
)

// GatewayIdentity is the identity of a cluster's multicluster gateway, with the trust domain
// cluster.local.
var GatewayIdentity = spiffe.ID{TrustDomain: "cluster.local", Namespace: SystemNamespace, ServiceAccount: meshv1.GatewayName}

// Gateway stands in for a remote cluster's multicluster gateway where a Link's prober is all that
// talks to it: it accepts mTLS, presenting a certificate a control plane signed, and answers /ready
// on its admin port.
type Gateway struct {
	// Host is where it listens: not loopback, which an EndpointSlice may not hold.
	Host               string
	TLSPort, AdminPort int32

	cert   atomic.Pointer[tls.Certificate]
	ready  atomic.Bool
	tlsLis net.Listener
	admin  *http.Server
}

// StartGateway starts a Gateway presenting id, certified by cp, that trusts roots. It is ready.
func StartGateway(cp *ControlPlane, roots *x509.CertPool, id spiffe.ID) (*Gateway, error) {
	g := &Gateway{}
	if err := g.PresentAs(cp, id); err != nil {
		return nil, err
	}
	g.ready.Store(true)
	host, err := hostIP()
	if err != nil {
		return nil, err
	}
	g.Host = host
	lis, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), mtls.Server(func() *tls.Certificate { return g.cert.Load() }, roots))
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
	g.TLSPort = port(lis.Addr())
	g.AdminPort = port(adminLis.Addr())
	return g, nil
}

// PresentAs makes the gateway present a certificate for id from now on.
func (g *Gateway) PresentAs(cp *ControlPlane, id spiffe.ID) error {
	cert, err := cp.WorkloadCertificate(id)
	if err != nil {
		return err
	}
	g.cert.Store(cert)
	return nil
}

// SetReady makes /ready answer 200 or 503.
func (g *Gateway) SetReady(ready bool) { g.ready.Store(ready) }

// Stop stops it.
func (g *Gateway) Stop() error { return errors.Join(g.tlsLis.Close(), g.admin.Close()) }

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
