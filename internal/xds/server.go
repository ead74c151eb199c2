package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/spiffe"
)

// Keepalive: the server pings a quiet stream so that a proxy which went away without closing its
// connection (a killed pod, a lost node) frees its watches.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Server serves the cache over ADS (and the per-type services) to clients that present a workload
// certificate from the mesh's trust anchors. It is a manager Runnable that every replica runs.
type Server struct {
	Cache    *Cache
	Listener net.Listener
	// Certificate is the server's own, signed by the identity issuer (see identity.Server).
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Roots are the trust anchors a client's certificate must chain to.
	Roots func() (*x509.CertPool, error)
	// Authorizer decides whether a workload may speak for a node.
	Authorizer Authorizer
	// Reporter hears about configuration a client rejected.
	Reporter Reporter
	// OnConnect, when set, is told the ID of each node authorized on a new stream.
	OnConnect func(node string)
	Log       logr.Logger

	streams sync.Map // stream ID -> *stream
}

// Authorizer tells whether the workload id may fetch configuration as node.
type Authorizer interface {
	Authorize(ctx context.Context, node *corev3.Node, id spiffe.ID) error
}

// Reporter is told when a client rejects (NACKs) a response.
type Reporter interface {
	Rejected(node *corev3.Node, typeURL, message string)
}

// stream is what the server knows of one open stream.
type stream struct {
	ctx  context.Context
	peer spiffe.ID
	node atomic.Pointer[corev3.Node] // set once the node is authorized
	// nacked is the last response nonce reported as rejected, so a client that repeats its NACK is
	// reported once.
	nacked map[string]string
}

// NeedLeaderElection is false: every replica serves its own clients.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done. Streams are long-lived, so stopping does not wait for them: their
// clients reconnect to another replica.
func (s *Server) Start(ctx context.Context) error {
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS13,
		GetConfigForClient: s.tlsConfig,
	})
	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// TLS already buffers what it reads (a record at a time), so gRPC's own 32 KB read buffer
		// per connection would only double it, on connections that are idle nearly always.
		grpc.ReadBufferSize(0),
	)
	xds := serverv3.NewServer(ctx, s.Cache, s.callbacks())
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(srv, xds)
	routeservice.RegisterRouteDiscoveryServiceServer(srv, xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(srv, xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(srv, xds)
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(s.Listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving xDS on %s: %w", s.Listener.Addr(), err)
	}
	return nil
}

// tlsConfig requires a client certificate that chains to the anchors in force now.
func (s *Server) tlsConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	roots, err := s.Roots()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: s.Certificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      roots,
		NextProtos:     []string{"h2"},
	}, nil
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc:        s.open,
		DeltaStreamOpenFunc:   s.open,
		StreamClosedFunc:      s.closed,
		DeltaStreamClosedFunc: s.closed,
		StreamRequestFunc: func(id int64, r *discovery.DiscoveryRequest) error {
			return s.request(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
		},
		StreamDeltaRequestFunc: func(id int64, r *discovery.DeltaDiscoveryRequest) error {
			for i, name := range r.ResourceNamesSubscribe {
				r.ResourceNamesSubscribe[i] = s.Cache.Intern(name)
			}
			return s.request(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
		},
		FetchRequestFunc: func(context.Context, *discovery.DiscoveryRequest) error {
			return status.Error(codes.Unimplemented, "fetching over REST is not served; open a stream")
		},
	}
}

// open records who is at the other end of a new stream.
func (s *Server) open(ctx context.Context, id int64, _ string) error {
	who, err := peerIdentity(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	s.streams.Store(id, &stream{ctx: ctx, peer: who, nacked: map[string]string{}})
	return nil
}

func (s *Server) closed(id int64, _ *corev3.Node) { s.streams.Delete(id) }

// Nodes are the IDs of the nodes with an authorized stream open to this replica.
func (s *Server) Nodes() []string {
	var ids []string
	s.streams.Range(func(_, v any) bool {
		if n := v.(*stream).node.Load(); n != nil {
			ids = append(ids, n.GetId())
		}
		return true
	})
	return ids
}

// request authorizes a stream's node on its first request, and reports rejected responses.
func (s *Server) request(id int64, node *corev3.Node, typeURL, nonce, detail string, rejected bool) error {
	v, ok := s.streams.Load(id)
	if !ok {
		return status.Error(codes.Internal, "unknown stream")
	}
	st := v.(*stream)
	if st.node.Load() == nil {
		if node.GetId() == "" {
			return status.Error(codes.InvalidArgument, "the first request of a stream must name its node")
		}
		if err := s.Authorizer.Authorize(st.ctx, node, st.peer); err != nil {
			s.Log.Info("Refused an xDS client", "node", node.GetId(), "identity", st.peer.String(), "reason", err.Error())
			return status.Error(codes.PermissionDenied, err.Error())
		}
		st.node.Store(node)
		if s.OnConnect != nil {
			s.OnConnect(node.GetId())
		}
	}
	if rejected && st.nacked[typeURL] != nonce {
		st.nacked[typeURL] = nonce
		s.Reporter.Rejected(st.node.Load(), typeURL, detail)
	}
	return nil
}

// peerIdentity is the workload identity in the client certificate TLS verified.
func peerIdentity(ctx context.Context) (spiffe.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffe.ID{}, errors.New("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return spiffe.ID{}, errors.New("no verified client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	if len(leaf.URIs) != 1 {
		return spiffe.ID{}, errors.New("the client certificate does not carry exactly one SPIFFE ID")
	}
	return spiffe.Parse(leaf.URIs[0].String())
}
