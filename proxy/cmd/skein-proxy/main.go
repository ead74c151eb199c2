// Command skein-proxy is Skein's data plane: one per pod, as a sidecar, or per host outside
// Kubernetes. It gets its workload certificate from the identity service, carries the application's
// outgoing traffic to its destinations with mTLS, and terminates mTLS for incoming traffic. With
// --mode=gateway it is instead a multicluster gateway (see proxy/gateway).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/skeinmesh/skein/internal/identityclient"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/admin"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/gateway"
	"github.com/skeinmesh/skein/proxy/h2peer"
	"github.com/skeinmesh/skein/proxy/inbound"
	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/proxy/metrics"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/proxy/origdst"
	"github.com/skeinmesh/skein/proxy/outbound"
	"github.com/skeinmesh/skein/proxy/xdsclient"
)

// config is read from the environment, as the injector sets it, with flags for running by hand.
type config struct {
	identityAddr, identityServerName, identity, tokenPath, trustAnchors string
	destinationsFile, opaquePorts                                       string
	xdsAddr, xdsServerName, nodeID                                      string
	inboundPort, outboundPort, adminPort, maxAuthorities                int
	drainTimeout, detectTimeout, responseTimeout                        time.Duration
	logLevel, memoryLimit, mode                                         string
	gatewayPort                                                         int
	pprof                                                               bool
}

// Modes of the proxy.
const (
	modeSidecar = "sidecar"
	modeGateway = "gateway"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "await" {
		os.Exit(await(os.Args[2:], os.Stderr))
	}
	var c config
	flag.StringVar(&c.identityAddr, "identity-addr", os.Getenv("SKEIN_IDENTITY_ADDR"), "host:port of the identity service")
	flag.StringVar(&c.identityServerName, "identity-server-name", envOr("SKEIN_IDENTITY_SERVER_NAME", "skein-identity.skein-system.svc"), "Name the identity service's certificate carries")
	flag.StringVar(&c.identity, "identity", os.Getenv("SKEIN_IDENTITY"), "This workload's SPIFFE ID")
	flag.StringVar(&c.tokenPath, "token-path", envOr("SKEIN_TOKEN_PATH", "/var/run/secrets/mesh.skein.dev/serviceaccount/token"), "The projected ServiceAccount token")
	flag.StringVar(&c.trustAnchors, "trust-anchors", os.Getenv("SKEIN_TRUST_ANCHORS"), "PEM trust anchors (or @file)")
	flag.StringVar(&c.destinationsFile, "destinations-file", os.Getenv("SKEIN_DESTINATIONS_FILE"), "A static destinations file (JSON), when there is no --xds-addr")
	flag.StringVar(&c.xdsAddr, "xds-addr", os.Getenv("SKEIN_XDS_ADDR"), "host:port of the control plane's xDS service, a comma-separated list for several replicas; destinations then come from xDS")
	flag.StringVar(&c.xdsServerName, "xds-server-name", envOr("SKEIN_XDS_SERVER_NAME", "skein-xds.skein-system.svc"), "Name the xDS service's certificate carries")
	flag.StringVar(&c.nodeID, "node-id", envOr("SKEIN_NODE_ID", defaultNodeID()), "How the proxy names itself to the control plane, <pod>.<namespace> (or <externalworkload>.<namespace>); from POD_NAME and POD_NAMESPACE when they are set")
	flag.StringVar(&c.opaquePorts, "opaque-ports", os.Getenv("SKEIN_OPAQUE_PORTS"), "Destination ports carried as TCP without protocol detection (servers that speak first), e.g. 25,3306,5432-5433")
	flag.IntVar(&c.inboundPort, "inbound-port", envInt("SKEIN_INBOUND_PORT", 4143), "Port of redirected inbound traffic")
	flag.IntVar(&c.outboundPort, "outbound-port", envInt("SKEIN_OUTBOUND_PORT", 4140), "Port of redirected outbound traffic")
	flag.IntVar(&c.adminPort, "admin-port", envInt("SKEIN_ADMIN_PORT", 4191), "Port of /metrics, /ready, /live and /shutdown")
	flag.IntVar(&c.maxAuthorities, "max-authorities", envInt("SKEIN_MAX_AUTHORITIES", 100), "Distinct authority label values kept in metrics; more are counted as \"other\"")
	flag.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "How long in-flight work may take after SIGTERM")
	flag.DurationVar(&c.responseTimeout, "response-timeout", 0, "How long an endpoint may take to start answering an HTTP request; 0 waits as long as the client does")
	flag.DurationVar(&c.detectTimeout, "detect-timeout", time.Second, "How long a silent client may take before its connection is opaque")
	flag.StringVar(&c.mode, "mode", envOr("SKEIN_PROXY_MODE", modeSidecar), "sidecar (inbound and outbound ports behind iptables) or gateway (a multicluster gateway on --gateway-port)")
	flag.IntVar(&c.gatewayPort, "gateway-port", envInt("SKEIN_GATEWAY_PORT", 4143), "Port a gateway accepts mTLS from linked clusters on")
	flag.StringVar(&c.logLevel, "log-level", envOr("SKEIN_LOG_LEVEL", "info"), "error, warn, info, debug or trace")
	flag.BoolVar(&c.pprof, "pprof", os.Getenv("SKEIN_PPROF") == "true", "Serve Go's profiles under /debug/pprof/ on the admin port, to localhost only")
	flag.StringVar(&c.memoryLimit, "memory-limit", os.Getenv("SKEIN_MEMORY_LIMIT"), "The Go runtime's soft memory limit, bytes or with a Ki, Mi or Gi suffix, or off; when unset, GOMEMLIMIT if set, else 16Mi; a proxy whose live heap nears it spends more CPU collecting, so raise it for proxies with many connections")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "skein-proxy:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	level, err := parseLevel(c.logLevel)
	if err != nil {
		return err
	}
	if c.mode != modeSidecar && c.mode != modeGateway {
		return fmt.Errorf("--mode: %q is neither %s nor %s", c.mode, modeSidecar, modeGateway)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	limit, set, err := memoryLimit(c.memoryLimit, os.Getenv("GOMEMLIMIT") != "")
	if err != nil {
		return err
	}
	if set {
		applyMemoryLimit(limit)
	}
	anchors, err := readPEM(c.trustAnchors)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(anchors) {
		return errors.New("--trust-anchors: no PEM certificate found")
	}
	xdsAddrs, err := c.xdsAddrs()
	if err != nil {
		return err
	}

	ic, err := identityclient.New(identityclient.Config{
		Addr: c.identityAddr, ServerName: c.identityServerName, TrustAnchors: anchors, Identity: c.identity, TokenPath: c.tokenPath,
		Log: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _ = ic.Run(ctx) }()
	certs := func() *tls.Certificate { return ic.Certificate() }

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "identity_cert_expiration_timestamp_seconds", Help: "When the proxy's workload certificate expires.",
	}, func() float64 {
		if cert := ic.Certificate(); cert != nil {
			return float64(cert.Leaf.NotAfter.Unix())
		}
		return 0
	}))

	dests, err := destinationsFrom(c, xdsAddrs, log, roots, certs, reg)
	if err != nil {
		return err
	}
	opaque, err := iptables.ParsePorts(c.opaquePorts)
	if err != nil {
		return fmt.Errorf("--opaque-ports: %w", err)
	}
	opaquePorts := map[uint16]bool{}
	for _, port := range opaque {
		opaquePorts[uint16(port)] = true
	}
	m := metrics.New(reg, c.maxAuthorities)
	// Peers of this version speak h2peer's HTTP/2; "h2" stays for older ones and gRPC's own clients.
	inboundTLS := mtls.Server(certs, roots, h2peer.ALPN, mtls.ProtoHTTP2, mtls.ProtoOpaque)
	serverTLS := mtls.Server(certs, roots, mtls.ProtoHTTP2, mtls.ProtoOpaque)
	in := &inbound.Proxy{TLS: inboundTLS, OriginalDst: originalDst,
		Port: uint16(c.inboundPort), AppHost: "127.0.0.1", Log: log, Metrics: m}
	out := &outbound.Proxy{Destinations: dests, Certs: certs, Roots: roots, OriginalDst: originalDst, Log: log,
		DetectTimeout: c.detectTimeout, OpaquePorts: opaquePorts, ResponseTimeout: c.responseTimeout, Metrics: m}

	// Each mode's listeners, served until SIGTERM and then drained.
	type listener struct {
		lis   net.Listener
		serve func(net.Listener) error
		drain func(context.Context)
	}
	var listeners []listener
	listen := func(port int, serve func(net.Listener) error, drain func(context.Context)) error {
		lis, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		listeners = append(listeners, listener{lis, serve, drain})
		return nil
	}
	if c.mode == modeGateway {
		// No iptables redirect: peers of linked clusters dial the gateway port itself.
		gw := &gateway.Gateway{TLS: serverTLS, Outbound: out, Log: log, Metrics: m}
		if err := listen(c.gatewayPort, gw.Serve, gw.Drain); err != nil {
			return err
		}
	} else {
		if err := listen(c.inboundPort, in.Serve, in.Drain); err != nil {
			return err
		}
		if err := listen(c.outboundPort, out.Serve, out.Drain); err != nil {
			return err
		}
	}
	var draining atomic.Bool
	// Ready once the proxy has a certificate and, from the control plane, its first destinations:
	// the application, started after its proxy is ready, then finds its services routed.
	unready := func() string {
		switch {
		case draining.Load():
			return "draining"
		case ic.Certificate() == nil:
			why := "waiting for a workload certificate from the identity service at " + c.identityAddr
			if err := ic.LastError(); err != nil {
				why += " (the last attempt failed: " + err.Error() + ")"
			}
			return why
		}
		if w := waiting(dests); w != "" {
			return "waiting for " + w
		}
		return ""
	}
	adm := &admin.Server{Metrics: reg, Shutdown: stop, Unready: unready, Pprof: c.pprof}
	adminSrv := &http.Server{Addr: ":" + strconv.Itoa(c.adminPort), Handler: adm.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = adminSrv.ListenAndServe() }()
	for _, l := range listeners {
		go func() { _ = l.serve(l.lis) }()
	}
	if c.mode == modeGateway {
		log.Info("Serving as a multicluster gateway", "identity", c.identity, "gateway", c.gatewayPort, "admin", c.adminPort)
	} else {
		log.Info("Serving", "identity", c.identity, "inbound", c.inboundPort, "outbound", c.outboundPort, "admin", c.adminPort)
	}

	<-ctx.Done()
	// Drain: not ready any more, no new connections, in-flight work finishes, then exit.
	log.Info("Draining")
	draining.Store(true)
	for _, l := range listeners {
		l.lis.Close()
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), c.drainTimeout)
	defer cancel()
	for _, l := range listeners {
		l.drain(drainCtx)
	}
	_ = adminSrv.Shutdown(drainCtx)
	return nil
}

// xdsAddrs reads --xds-addr and checks that the flags that go with it are coherent.
func (c config) xdsAddrs() ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(c.xdsAddr, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("--xds-addr: %q is not host:port", a)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	if c.destinationsFile != "" {
		return nil, errors.New("--destinations-file and --xds-addr are both set: with --xds-addr, destinations come from the control plane; drop one of them")
	}
	if c.nodeID == "" {
		return nil, errors.New("--xds-addr needs --node-id, or POD_NAME and POD_NAMESPACE set")
	}
	if _, _, err := xdsnames.ParseNodeID(c.nodeID); err != nil {
		return nil, fmt.Errorf("--node-id: %w", err)
	}
	return addrs, nil
}

// destinationsFrom is where the outbound proxy learns of destinations: the control plane when there
// are xdsAddrs, else the destinations file, else nowhere. The proxy serves whether or not the control
// plane answers, with the last destinations it had. Both sources keep following changes while the
// proxy drains, since requests in flight still pick endpoints.
func destinationsFrom(c config, xdsAddrs []string, log *slog.Logger, roots *x509.CertPool, certs mtls.Certificates, reg prometheus.Registerer) (destinations.Source, error) {
	switch {
	case len(xdsAddrs) > 0:
		xc, err := xdsclient.New(xdsclient.Config{Addrs: xdsAddrs, ServerName: c.xdsServerName, Roots: roots, Certificate: certs,
			NodeID: c.nodeID, Log: log, Metrics: reg})
		if err != nil {
			return nil, err
		}
		go func() { _ = xc.Run(context.Background()) }()
		go func() {
			<-xc.Ready()
			log.Info("Destinations from the control plane are in force", "services", len(xc.Snapshot().Services))
		}()
		return xc, nil
	case c.destinationsFile != "":
		f, err := destinations.NewFile(c.destinationsFile)
		if err != nil {
			return nil, err
		}
		f.OnError = func(err error) { log.Warn("Keeping the last good destinations", "err", err) }
		go f.Watch(time.Second, make(chan struct{}))
		return f, nil
	default:
		snap, _ := destinations.NewSnapshot(nil)
		return destinations.NewStatic(snap), nil
	}
}

// waiting says what a source that loads in the background (xDS) waits for before its first
// snapshot, or "" when it has it.
func waiting(src destinations.Source) string {
	if w, ok := src.(interface{ Waiting() string }); ok {
		return w.Waiting()
	}
	return ""
}

// defaultNodeID is the node ID of a pod whose name and namespace the injector put in the environment.
func defaultNodeID() string {
	if name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"); name != "" && ns != "" {
		return xdsnames.NodeID(name, ns)
	}
	return ""
}

// originalDst is where a redirected connection was going.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(origdst.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not a TCP connection: %T", c)
	}
	return origdst.OriginalDst(tc)
}

// parseLevel reads --log-level: slog's levels, and trace (below debug), which MeshConfig offers.
func parseLevel(s string) (slog.Level, error) {
	if strings.EqualFold(s, "trace") {
		return slog.LevelDebug - 4, nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: %w", err)
	}
	return level, nil
}

func readPEM(v string) ([]byte, error) {
	if len(v) > 0 && v[0] == '@' {
		return os.ReadFile(v[1:])
	}
	return []byte(v), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
