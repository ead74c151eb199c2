package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/gateway/preamble"
	"github.com/skeinmesh/skein/test/localmesh"
)

// TestMulticlusterGateway runs "cluster A"'s client pod, whose proxy knows web-east as a service
// whose one endpoint is a gateway, and the gateway (skein-proxy --mode=gateway in a pod of its own)
// in front of "cluster B"'s server pod. Both clusters share the trust anchor here, as linked ones do.
func TestMulticlusterGateway(t *testing.T) {
	m, _ := newMesh(t, false)
	server := addPod(t, m, "web-1", "web")
	slow, err := m.AddPodServing("slow-1", "shop", "slow", nil, "-latencies", "2s:1")
	if err != nil {
		t.Fatal(err)
	}
	const (
		webHTTP, webTCP = "web.shop.svc.cluster.local:8080", "web.shop.svc.cluster.local:9000"
		private         = "private.shop.svc.cluster.local:8080"
		slowHTTP        = "slow.shop.svc.cluster.local:8080"
	)
	gw, err := m.AddGateway("gateway", "skein-system", meshv1.GatewayName, []destinations.Service{
		{Authority: webHTTP, Exported: true, Endpoints: []destinations.Endpoint{endpoint(server, 8080)}},
		{Authority: webTCP, Exported: true, Opaque: true, Endpoints: []destinations.Endpoint{endpoint(server, 9000)}},
		{Authority: private, Endpoints: []destinations.Endpoint{endpoint(server, 8080)}},
		{Authority: slowHTTP, Exported: true, Endpoints: []destinations.Endpoint{endpoint(slow, 8080)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	gwID := spiffe.ID{TrustDomain: m.TrustDomain, Namespace: "skein-system", ServiceAccount: meshv1.GatewayName}.String()
	gwAddr := endpoint(gw, 4143).Addr
	viaGateway := func(target string) []destinations.Endpoint {
		return []destinations.Endpoint{{Addr: gwAddr, Identity: gwID, GatewayTarget: target}}
	}
	const webEast, privateEast, slowEast = "10.96.50.10", "10.96.50.11", "10.96.50.12"
	vip := func(ip string, port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(ip), port)}
	}
	client := addPod(t, m, "client", "client",
		destinations.Service{Authority: "web-east.shop.svc.cluster.local:8080", Addrs: vip(webEast, 8080), Endpoints: viaGateway(webHTTP)},
		destinations.Service{Authority: "web-east.shop.svc.cluster.local:9000", Addrs: vip(webEast, 9000), Opaque: true, Endpoints: viaGateway(webTCP)},
		destinations.Service{Authority: "private-east.shop.svc.cluster.local:8080", Addrs: vip(privateEast, 8080), Endpoints: viaGateway(private)},
		destinations.Service{Authority: "slow-east.shop.svc.cluster.local:8080", Addrs: vip(slowEast, 8080), Endpoints: viaGateway(slowHTTP)},
	)

	const marker = "skein-gateway-marker-41c2"
	t.Run("HTTP/1.1, HTTP/2 and opaque TCP reach the server through the gateway", func(t *testing.T) {
		forwarded := " forwarded-for=" + client.ID.String()
		for _, tt := range []struct{ mode, addr, want string }{
			{"http1", webEast + ":8080", fmt.Sprintf("200 HTTP/1.1 /http1 %s %s%s", gwID, marker, forwarded)},
			{"h2", webEast + ":8080", fmt.Sprintf("200 HTTP/2.0 /h2 %s %s%s", gwID, marker, forwarded)},
			{"tcp", webEast + ":9000", "echo: " + marker},
		} {
			got, err := client.Run(0, "-mode", tt.mode, "-addr", tt.addr, "-body", marker)
			if err != nil || got != tt.want {
				t.Errorf("%s client in cluster A: %q, %v; want %q", tt.mode, got, err, tt.want)
			}
		}
		metrics := localmesh.Get(gw.Admin + "/metrics")
		for _, want := range [][]string{
			{`request_total{`, `client_id="` + client.ID.String() + `"`, `direction="gateway"`, `dst_service="web.shop"`, `server_id="` + server.ID.String() + `"`, `tls="true"`, `} 2`},
			{`tcp_open_total{direction="gateway",dst_service="web.shop",tls="true"} 2`},
		} {
			if !hasLine(metrics, want...) {
				t.Errorf("the gateway's metrics lack a line with %q:\n%s", want, grepLines(metrics, "request_total", "tcp_open_total"))
			}
		}
		if metrics := localmesh.Get(server.Admin + "/metrics"); !hasLine(metrics, `request_total{`, `client_id="`+gwID+`"`, `direction="inbound"`) {
			t.Errorf("the server's proxy did not count the gateway as its client:\n%s", grepLines(metrics, "request_total"))
		}
	})

	t.Run("a target that is not exported is refused", func(t *testing.T) {
		got, err := client.Run(0, "-mode", "http1", "-addr", privateEast+":8080", "-body", marker)
		if err != nil || !strings.HasPrefix(got, "502 ") || strings.Contains(got, marker) {
			t.Errorf("a request for an unexported service through the gateway: %q, %v; want a 502 from the client's proxy", got, err)
		}
		waitFor(t, 10*time.Second, "the gateway to count the refusal", func() bool {
			return hasLine(localmesh.Get(gw.Admin+"/metrics"), `gateway_refused_total{reason="not_exported"}`)
		})
	})

	anchors := x509.NewCertPool()
	if !anchors.AppendCertsFromPEM([]byte(m.TrustAnchors)) {
		t.Fatal("the mesh's trust anchors are not PEM")
	}
	t.Run("a TLS 1.3 client without a certificate can check the gateway's identity", func(t *testing.T) {
		// As the Link controller's probe does: its side of the handshake completes, then the gateway
		// refuses it for lack of a client certificate.
		conn, err := tls.Dial("tcp", gwAddr.String(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				leaf, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				inter := x509.NewCertPool()
				for _, der := range raw[1:] {
					c, err := x509.ParseCertificate(der)
					if err != nil {
						return err
					}
					inter.AddCert(c)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter}); err != nil {
					return err
				}
				if len(leaf.URIs) != 1 || leaf.URIs[0].String() != gwID {
					return fmt.Errorf("the gateway presented %v, not %s", leaf.URIs, gwID)
				}
				return nil
			}})
		if err != nil {
			t.Fatalf("handshake with the gateway: %v", err)
		}
		if got := conn.ConnectionState().Version; got != tls.VersionTLS13 {
			t.Errorf("TLS version %x, want 1.3", got)
		}
		conn.Close()
	})

	t.Run("a peer with a certificate from another trust anchor is refused", func(t *testing.T) {
		cert := foreignCertificate(t, "spiffe://"+m.TrustDomain+"/ns/shop/sa/client")
		conn, err := tls.Dial("tcp", gwAddr.String(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("handshake: %v (the client's side should complete; the gateway refuses after)", err)
		}
		defer conn.Close()
		if err := preamble.Write(conn, webHTTP); err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(make([]byte, 100))
		var netErr net.Error
		if n != 0 || err == nil || errors.As(err, &netErr) && netErr.Timeout() {
			t.Errorf("a peer of another trust anchor read %d bytes, %v; want the connection refused", n, err)
		}
	})

	t.Run("a plain TCP client is refused", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", gwAddr.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", webHTTP)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(conn)
		if strings.Contains(string(got), "HTTP/") || err != nil {
			t.Errorf("a plain client read %q, %v; want the connection closed with no answer", got, err)
		}
	})

	waitFor(t, 10*time.Second, "the gateway to count the refused handshakes", func() bool {
		return hasLine(localmesh.Get(gw.Admin+"/metrics"), `gateway_refused_total{reason="tls"} 3`)
	})

	t.Run("on SIGTERM the gateway finishes the request under way, then exits", func(t *testing.T) {
		done := make(chan string, 1)
		go func() {
			out, err := client.Run(0, "-mode", "h2", "-addr", slowEast+":8080", "-body", marker)
			done <- fmt.Sprint(out, err)
		}()
		// The request has passed the gateway once the slow server's proxy has a connection.
		waitFor(t, 20*time.Second, "the request to reach the slow server", func() bool {
			return hasLine(localmesh.Get(slow.Admin+"/metrics"), `tcp_open_total{direction="inbound",dst_service="",tls="true"} 1`)
		})
		if err := gw.TerminateProxy(); err != nil {
			t.Fatal(err)
		}
		if got, want := <-done, fmt.Sprintf("200 HTTP/2.0 /h2 %s %s forwarded-for=%s<nil>", gwID, marker, client.ID); got != want {
			t.Errorf("the request under way when the gateway was told to stop: %q, want %q", got, want)
		}
		if conn, err := net.DialTimeout("tcp", gwAddr.String(), 5*time.Second); err == nil {
			conn.Close()
			t.Error("the gateway port still accepts connections after the gateway exited")
		}
	})
}

// hasLine tells whether a line of text contains every part.
func hasLine(text string, parts ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// foreignCertificate is a workload certificate for id signed by a CA of its own, outside the mesh's
// trust bundle.
func foreignCertificate(t *testing.T, id string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another anchor"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// TestMulticlusterGatewayOverXDS is the same path with every proxy configured by the control plane:
// Services web (exported) and private (not), mirrored as web-east and private-east with the gateway
// as their endpoint and a Link naming its identity, as the Link controller would write them.
func TestMulticlusterGatewayOverXDS(t *testing.T) {
	m, fm := newMesh(t, true)
	ctx := context.Background()
	server := addPod(t, m, "web-1", "web")
	gw, err := m.AddGateway("gateway", "skein-system", meshv1.GatewayName, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := addPod(t, m, "client", "client")
	gwID := spiffe.ID{TrustDomain: m.TrustDomain, Namespace: "skein-system", ServiceAccount: meshv1.GatewayName}.String()
	for _, name := range []string{"web", "private"} {
		if _, err := m.Serve(name, "shop", server); err != nil {
			t.Fatal(err)
		}
	}
	web := &corev1.Service{}
	if err := fm.Client.Get(ctx, ctrlclient.ObjectKey{Namespace: "shop", Name: "web"}, web); err != nil {
		t.Fatal(err)
	}
	before := web.DeepCopy()
	web.Labels = map[string]string{meshv1.ExportedLabel: "true"}
	if err := fm.Client.Patch(ctx, web, ctrlclient.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	link := &meshv1.Link{
		ObjectMeta: metav1.ObjectMeta{Namespace: "skein-system", Name: "east"},
		Spec: meshv1.LinkSpec{TargetClusterName: "east", ClusterCredentialsSecret: "east-credentials",
			GatewayAddress: gw.IP.String(), GatewayIdentity: gwID},
	}
	if err := fm.Client.Create(ctx, link); err != nil {
		t.Fatal(err)
	}
	mirror := func(remote string) string {
		labels := map[string]string{meshv1.MirroredFromLabel: "east", meshv1.LinkLabel: "skein-system.east"}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: remote + "-east", Labels: labels,
				Annotations: map[string]string{meshv1.RemoteServiceAnnotation: remote + ".shop"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "tcp", Port: 9000}}},
		}
		if err := fm.Client.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		sliceLabels := map[string]string{discoveryv1.LabelServiceName: svc.Name}
		for k, v := range labels {
			sliceLabels[k] = v
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: svc.Name, Labels: sliceLabels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](4143)}, {Name: ptr.To("tcp"), Port: ptr.To[int32](4143)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{gw.IP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Link", Namespace: "skein-system", Name: "east"}}},
		}
		// The Link controller, which keeps the endpoints of its mirrors, may have made it first.
		if err := fm.Client.Create(ctx, slice); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		return svc.Spec.ClusterIP
	}
	webEast, privateEast := mirror("web"), mirror("private")

	const marker = "skein-gateway-xds-marker-9d17"
	want := fmt.Sprintf("200 HTTP/1.1 /http1 %s %s forwarded-for=%s", gwID, marker, client.ID)
	var got string
	waitFor(t, 30*time.Second, "web-east to answer through the gateway", func() bool {
		got, _ = client.Run(0, "-mode", "http1", "-addr", webEast+":80", "-body", marker)
		return got == want
	})
	if got, err := client.Run(0, "-mode", "tcp", "-addr", webEast+":9000", "-body", marker); err != nil || got != "echo: "+marker {
		t.Errorf("opaque TCP to web-east: %q, %v", got, err)
	}
	if got, err := client.Run(0, "-mode", "h2", "-addr", privateEast+":80", "-body", marker); err != nil || !strings.HasPrefix(got, "502 ") {
		t.Errorf("private-east, which is not exported: %q, %v; want a 502", got, err)
	}
	if !hasLine(localmesh.Get(gw.Admin+"/metrics"), `gateway_refused_total{reason="not_exported"}`) {
		t.Error("the gateway did not count its refusal of private")
	}
}
