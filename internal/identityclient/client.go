// Package identityclient is the proxy's side of the identity service: it keeps a private key that
// never leaves the process, gets it certified as the workload's identity with the ServiceAccount
// token, and renews the certificate at about 70% of its lifetime. It imports no Kubernetes code.
package identityclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	backoffconfig "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// Config says where the identity service is, how to trust it, and what to ask for.
type Config struct {
	// Addr is the identity service's host:port.
	Addr string
	// ServerName is the name the identity service's certificate must carry.
	ServerName string
	// TrustAnchors are the PEM trust anchors the identity service's certificate must chain to.
	TrustAnchors []byte
	// Identity is the SPIFFE ID to ask for.
	Identity string
	// TokenPath is the ServiceAccount token's file, read again for every request since it rotates.
	TokenPath string

	// RenewAt is the share of a certificate's lifetime after which it is renewed; 0.7 when zero.
	RenewAt float64
	// MinBackoff and MaxBackoff bound the wait between failed attempts; 1s and 1m when zero. Until
	// the first certificate, the wait is at most firstCertMaxBackoff: a proxy without one cannot
	// serve, so it asks again soon.
	MinBackoff, MaxBackoff time.Duration
	// Log hears why an attempt failed; nothing is logged when nil.
	Log *slog.Logger
}

// Client keeps a certificate for one identity current.
type Client struct {
	cfg   Config
	id    spiffe.ID
	key   *ecdsa.PrivateKey
	csr   []byte
	roots *x509.CertPool
	conn  *grpc.ClientConn
	api   pb.IdentityClient

	cert      atomic.Pointer[tls.Certificate]
	ready     chan struct{}
	readyOnce sync.Once
	// lastErr is why the last attempt failed, nil after a success.
	lastErr atomic.Pointer[error]
}

// New makes the key and the CSR; it does not contact the identity service yet.
func New(cfg Config) (*Client, error) {
	if cfg.RenewAt == 0 {
		cfg.RenewAt = 0.7
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Minute
	}
	id, err := spiffe.Parse(cfg.Identity)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.TrustAnchors) {
		return nil, errors.New("no trust anchor in the trust bundle")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("making the CSR: %w", err)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS13})
	// gRPC's own reconnection backoff grows to two minutes, which would hold back the attempts Run
	// makes; it is kept within firstCertMaxBackoff.
	reconnect := backoffconfig.DefaultConfig
	reconnect.MaxDelay = firstCertMaxBackoff
	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(creds), grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnect, MinConnectTimeout: 20 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("connecting to the identity service at %s: %w", cfg.Addr, err)
	}
	return &Client{cfg: cfg, id: id, key: key, csr: csr, roots: roots, conn: conn, api: pb.NewIdentityClient(conn), ready: make(chan struct{})}, nil
}

// Close closes the connection to the identity service.
func (c *Client) Close() error { return c.conn.Close() }

// Certificate is the current certificate, or nil before the first one arrives.
func (c *Client) Certificate() *tls.Certificate { return c.cert.Load() }

// LastError is why the last attempt to get a certificate failed, or nil if it succeeded.
func (c *Client) LastError() error {
	if err := c.lastErr.Load(); err != nil {
		return *err
	}
	return nil
}

// Ready is closed once the first certificate has arrived.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Certify asks for a certificate once, checks it, and puts it in force.
func (c *Client) Certify(ctx context.Context) (*tls.Certificate, error) {
	token, err := os.ReadFile(c.cfg.TokenPath)
	if err != nil {
		return nil, fmt.Errorf("reading the ServiceAccount token: %w", err)
	}
	resp, err := c.api.Certify(ctx, &pb.CertifyRequest{Identity: c.cfg.Identity, Token: token, CertificateSigningRequest: c.csr})
	if err != nil {
		return nil, fmt.Errorf("certifying %s: %w", c.cfg.Identity, err)
	}
	cert, err := c.check(resp)
	if err != nil {
		return nil, fmt.Errorf("the identity service's answer for %s: %w", c.cfg.Identity, err)
	}
	c.cert.Store(cert)
	c.readyOnce.Do(func() { close(c.ready) })
	return cert, nil
}

// check verifies that the certificate is for our key and identity and chains to a trust anchor.
func (c *Client) check(resp *pb.CertifyResponse) (*tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, err
	}
	if !c.key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("the certificate is not for our key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != c.id.String() {
		return nil, fmt.Errorf("the certificate names %v, not %s", leaf.URIs, c.id)
	}
	inter := x509.NewCertPool()
	for _, der := range resp.GetIntermediateCertificates() {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	chain := append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...)
	return &tls.Certificate{Certificate: chain, PrivateKey: c.key, Leaf: leaf}, nil
}

// attemptTimeout bounds one request to the identity service, so that a call lost on the way is
// retried rather than waited for; firstCertMaxBackoff bounds the wait between attempts until the
// first certificate.
const (
	attemptTimeout      = 15 * time.Second
	firstCertMaxBackoff = 5 * time.Second
)

// Run keeps the certificate current until ctx is done: it renews at RenewAt of the lifetime, with
// jitter so that proxies started together do not renew together, and retries failures with
// exponential backoff while the current certificate stays in force.
func (c *Client) Run(ctx context.Context) error {
	failures := 0
	for {
		var wait time.Duration
		attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
		cert, err := c.Certify(attempt)
		cancel()
		if err != nil {
			c.lastErr.Store(&err)
			failures++
			hi := c.cfg.MaxBackoff
			if c.Certificate() == nil {
				hi = min(hi, firstCertMaxBackoff)
			}
			wait = backoff(failures, c.cfg.MinBackoff, hi)
			if c.cfg.Log != nil {
				c.cfg.Log.Warn("No workload certificate from the identity service; retrying", "identity", c.cfg.Identity, "err", err, "retry_in", wait)
			}
		} else {
			c.lastErr.Store(nil)
			failures = 0
			wait = renewalDelay(time.Now(), cert.Leaf.NotAfter, c.cfg.RenewAt)
			if c.cfg.Log != nil {
				c.cfg.Log.Debug("Got a workload certificate", "identity", c.cfg.Identity, "not_after", cert.Leaf.NotAfter, "renew_in", wait)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// renewalDelay is RenewAt of the time left, give or take 10% of it.
func renewalDelay(now, notAfter time.Time, renewAt float64) time.Duration {
	left := notAfter.Sub(now)
	if left <= 0 {
		return 0
	}
	jitter := (mathrand.Float64()*2 - 1) * 0.1
	return time.Duration(float64(left) * math.Min(renewAt+jitter*renewAt, 0.95))
}

// backoff doubles from min up to max with full jitter.
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo << min(failures-1, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + time.Duration(mathrand.Int64N(int64(d/2)+1))
}
