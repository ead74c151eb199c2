package multicluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/proxy/mtls"
)

// ProbeTarget is what a Prober checks, from a Link's spec.
type ProbeTarget struct {
	// Address is the gateway's IP or DNS name.
	Address string
	// GatewayPort is where it accepts mTLS, and Identity the SPIFFE ID it must present there.
	GatewayPort int32
	Identity    string
	// Path and Port are its health endpoint, plain HTTP.
	Path string
	Port int32
	// Period, Timeout and FailureThreshold are as in the Link's probeSpec.
	Period, Timeout  time.Duration
	FailureThreshold int32
}

// TargetOf reads a Link's ProbeTarget, filling what the API server would have defaulted.
func TargetOf(link *meshv1.Link) ProbeTarget {
	ps := link.Spec.ProbeSpec
	t := ProbeTarget{Address: link.Spec.GatewayAddress, GatewayPort: link.Spec.GatewayPort, Identity: link.Spec.GatewayIdentity,
		Path: ps.Path, Port: ps.Port, Period: 3 * time.Second, Timeout: time.Second, FailureThreshold: ps.FailureThreshold}
	if ps.Period != nil && ps.Period.Duration > 0 {
		t.Period = ps.Period.Duration
	}
	if ps.Timeout != nil && ps.Timeout.Duration > 0 {
		t.Timeout = ps.Timeout.Duration
	}
	if t.GatewayPort == 0 {
		t.GatewayPort = 4143
	}
	if t.Path == "" {
		t.Path = "/ready"
	}
	if t.Port == 0 {
		t.Port = 4191
	}
	if t.FailureThreshold == 0 {
		t.FailureThreshold = 3
	}
	return t
}

// Probe failures, named as the Link's condition reasons.
const (
	FailureUnreachable      = meshv1.ReasonGatewayUnreachable
	FailureIdentityMismatch = meshv1.ReasonGatewayIdentityMismatch
)

// Health is what the probes of a gateway found so far.
type Health struct {
	// Alive is true from a successful probe until FailureThreshold probes in a row fail.
	Alive bool
	// IP is the gateway's address as last resolved; invalid until it resolves.
	IP netip.Addr
	// Probed is false until the first probe ends; LastProbe is when the last one did.
	Probed    bool
	LastProbe time.Time
	// Latency is the round trip of the last successful health request.
	Latency time.Duration
	// Failures counts the probes that failed in a row; Reason (FailureUnreachable or
	// FailureIdentityMismatch) and Message say why the last one did.
	Failures        int32
	Reason, Message string
}

// Prober probes one gateway every period, in one goroutine, and calls notify after each probe.
type Prober struct {
	Target ProbeTarget

	roots  func() (*x509.CertPool, error)
	notify func()
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	health Health
}

// StartProber starts probing t; roots is the local trust bundle the gateway's certificate must chain to.
func StartProber(t ProbeTarget, roots func() (*x509.CertPool, error), notify func()) *Prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prober{Target: t, roots: roots, notify: notify, cancel: cancel, done: make(chan struct{}),
		client: &http.Client{Timeout: t.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}}
	go p.run(ctx)
	return p
}

// Health is the latest result.
func (p *Prober) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// Stop stops probing and waits for the probe in flight.
func (p *Prober) Stop() {
	p.cancel()
	<-p.done
}

func (p *Prober) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.Target.Period)
	defer tick.Stop()
	for {
		p.record(p.probe(ctx))
		if ctx.Err() != nil {
			return
		}
		p.notify()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// result is one probe's outcome.
type result struct {
	ip      netip.Addr
	latency time.Duration
	reason  string
	err     error
}

func (p *Prober) record(r result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.health
	h.Probed, h.LastProbe = true, time.Now()
	if r.ip.IsValid() {
		h.IP = r.ip
	}
	if r.err == nil {
		h.Alive, h.Failures, h.Latency, h.Reason, h.Message = true, 0, r.latency, "", ""
		return
	}
	h.Failures++
	h.Reason, h.Message = r.reason, r.err.Error()
	if h.Failures >= p.Target.FailureThreshold {
		h.Alive = false
	}
}

// probe resolves the gateway, checks its identity with a TLS handshake on its mTLS port, then
// requests its health endpoint.
func (p *Prober) probe(ctx context.Context) result {
	t := p.Target
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	ip, err := resolve(ctx, t.Address)
	if err != nil {
		return result{reason: FailureUnreachable, err: err}
	}
	if reason, err := p.checkIdentity(ctx, ip); err != nil {
		return result{ip: ip, reason: reason, err: err}
	}
	url := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(t.Port))) + t.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return result{ip: ip, reason: FailureUnreachable, err: err}
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return result{ip: ip, reason: FailureUnreachable, err: fmt.Errorf("health check: %w", err)}
	}
	latency := time.Since(start)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return result{ip: ip, reason: FailureUnreachable, err: fmt.Errorf("health check: GET %s answered %s", url, resp.Status)}
	}
	return result{ip: ip, latency: latency}
}

// checkIdentity completes the client side of a TLS 1.3 handshake, which needs no client
// certificate of ours: it proves that the gateway holds a key for a certificate of the local trust
// bundle naming the expected identity.
func (p *Prober) checkIdentity(ctx context.Context, ip netip.Addr) (reason string, err error) {
	roots, err := p.roots()
	if err != nil {
		return FailureIdentityMismatch, fmt.Errorf("reading the trust bundle: %w", err)
	}
	cfg := mtls.Client(func() *tls.Certificate { return &tls.Certificate{} }, roots, p.Target.Identity)
	var verifyErr error
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		verifyErr = verify(raw, chains)
		return verifyErr
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(p.Target.GatewayPort)))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return FailureUnreachable, fmt.Errorf("identity check: %w", err)
	}
	defer conn.Close()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if verifyErr != nil {
			return FailureIdentityMismatch, fmt.Errorf("identity check at %s: %w", addr, verifyErr)
		}
		return FailureUnreachable, fmt.Errorf("identity check at %s: %w", addr, err)
	}
	return "", nil
}

// resolve is address as an IP, looked up when it is a DNS name.
func resolve(ctx context.Context, address string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(address); err == nil {
		return ip, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolving %s: %w", address, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, errors.New("resolving " + address + ": no address")
	}
	return ips[0].Unmap(), nil
}
