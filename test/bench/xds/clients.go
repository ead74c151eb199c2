package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file is the client process: `xds clients -config <file>` runs every simulated proxy, each
// on its own TLS connection with its own certificate and one delta ADS stream, as skein-proxy would.
// It talks to the benchmark over its standard streams: it prints messages (msgPrefix + JSON) on
// stdout, and reads commands ("wait <weight>") on stdin.

// resourceTypes are the types a client holds, in the order a proxy asks for them.
var resourceTypes = []string{resource.ListenerType, resource.ClusterType, resource.RouteType, resource.EndpointType}

// clientsConfig is what the benchmark hands the client process.
type clientsConfig struct {
	Addr, ServerName string
	// Anchors is the trust bundle, PEM.
	Anchors []byte
	Clients []clientSpec
	// Counts are how many resources of each type a synced client holds.
	Counts map[string]int
	// Apex names the RouteConfiguration whose weights the benchmark changes.
	Apex string
	// AllWildcard makes the clients subscribe to RouteConfigurations and ClusterLoadAssignments by
	// wildcard too, as skein-proxy does, rather than by name, as grpc-go does.
	AllWildcard bool
}

// clientSpec is one simulated proxy: its node ID, and its certificate chain and key, PEM.
type clientSpec struct {
	Node      string
	Cert, Key []byte
}

// message is what the client process tells the benchmark.
type message struct {
	// Kind is "synced", "acked" or "failed".
	Kind string
	// Start is when the clients started connecting (synced), in Unix nanoseconds.
	Start int64 `json:",omitempty"`
	// At is, per client, when it had synced, or had ACKed the apex route with Weight.
	At     []int64 `json:",omitempty"`
	Weight uint32  `json:",omitempty"`
	Error  string  `json:",omitempty"`
}

const msgPrefix = "MSG "

// ackTimeout bounds how long the client process waits for every client to ACK one change.
const ackTimeout = time.Minute

func clientsMain(args []string) error {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
	fs := flag.NewFlagSet("clients", flag.ContinueOnError)
	path := fs.String("config", "", "the clients' configuration (JSON), written by the benchmark")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*path)
	if err != nil {
		return err
	}
	var cfg clientsConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("reading %s: %w", *path, err)
	}
	if err := raiseFileLimit(len(cfg.Clients) + 100); err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.Anchors) {
		return errors.New("no certificate in the trust bundle")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acks := newAckLog(len(cfg.Clients))
	failed := make(chan error, len(cfg.Clients))
	synced := make([]chan time.Time, len(cfg.Clients))
	start := time.Now()
	for i, spec := range cfg.Clients {
		cert, err := tls.X509KeyPair(spec.Cert, spec.Key)
		if err != nil {
			return fmt.Errorf("client %s: %w", spec.Node, err)
		}
		creds := credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS13,
		})
		conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		synced[i] = make(chan time.Time, 1)
		c := &adsClient{cfg: &cfg, node: spec.Node, acks: acks, synced: synced[i]}
		go func() {
			if err := c.run(ctx, conn); err != nil && ctx.Err() == nil {
				failed <- fmt.Errorf("client %s: %w", spec.Node, err)
			}
		}()
	}

	out := bufio.NewWriter(os.Stdout)
	tell := func(m message) error {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s%s\n", msgPrefix, b)
		return out.Flush()
	}
	fail := func(err error) error {
		return errors.Join(err, tell(message{Kind: "failed", Error: err.Error()}))
	}
	at := make([]int64, len(synced))
	for i, ch := range synced {
		select {
		case t := <-ch:
			at[i] = t.UnixNano()
		case err := <-failed:
			return fail(err)
		}
	}
	if err := tell(message{Kind: "synced", Start: start.UnixNano(), At: at}); err != nil {
		return err
	}

	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		f := strings.Fields(commands.Text())
		if len(f) != 2 || f[0] != "wait" {
			return fail(fmt.Errorf("unknown command %q", commands.Text()))
		}
		w, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return fail(fmt.Errorf("command %q: %w", commands.Text(), err))
		}
		select {
		case <-acks.all(uint32(w)):
			if err := tell(message{Kind: "acked", Weight: uint32(w), At: acks.times(uint32(w))}); err != nil {
				return err
			}
		case err := <-failed:
			return fail(err)
		case <-time.After(ackTimeout):
			return fail(fmt.Errorf("after %s, only %d of %d clients had ACKed weight %d", ackTimeout, len(acks.times(uint32(w))), len(cfg.Clients), w))
		}
	}
	return commands.Err() // stdin closed: the benchmark is done
}

// adsClient is one simulated proxy. Like a proxy, it subscribes to every Listener and Cluster, then
// to the RouteConfigurations and ClusterLoadAssignments they name, and ACKs every response. The
// names are taken from the responses' resource names (xdsnames gives all four resources of a port
// one name) rather than by decoding the resources: the clients share the machine with the control
// plane, and decoding 4,000 resources per client would take CPU from what is measured. Only the
// apex's RouteConfiguration is decoded, to read its weights.
type adsClient struct {
	cfg    *clientsConfig
	node   string
	acks   *ackLog
	synced chan<- time.Time

	held       map[string]map[string]bool // by type, the names of the resources held
	subscribed map[string]map[string]bool // Routes and ClusterLoadAssignments asked for by name
	seen       map[uint32]bool            // apex weights already logged
}

// follows maps a wildcard type to the type whose resources it names.
var follows = map[string]string{resource.ListenerType: resource.RouteType, resource.ClusterType: resource.EndpointType}

func (c *adsClient) run(ctx context.Context, conn *grpc.ClientConn) error {
	c.held, c.subscribed, c.seen = map[string]map[string]bool{}, map[string]map[string]bool{}, map[uint32]bool{}
	for _, typ := range resourceTypes {
		c.held[typ], c.subscribed[typ] = map[string]bool{}, map[string]bool{}
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	// The node goes on the first request only: the server remembers it for the stream.
	wildcard := []string{resource.ListenerType, resource.ClusterType}
	if c.cfg.AllWildcard {
		wildcard = resourceTypes
	}
	for i, typ := range wildcard {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: []string{"*"}}
		if i == 0 {
			req.Node = &corev3.Node{Id: c.node}
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	synced := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		held := c.held[typ]
		if held == nil {
			return fmt.Errorf("a response of unexpected type %s", typ)
		}
		var apex *anypb.Any
		for _, r := range resp.GetResources() {
			held[r.GetName()] = true
			if typ == resource.RouteType && r.GetName() == c.cfg.Apex {
				apex = r.GetResource()
			}
		}
		for _, name := range resp.GetRemovedResources() {
			delete(held, name)
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		acked := time.Now()
		if apex != nil {
			w, err := firstWeight(apex)
			if err != nil {
				return err
			}
			if w != 0 && !c.seen[w] {
				c.seen[w] = true
				c.acks.add(w, acked)
			}
		}
		if next := follows[typ]; next != "" && !c.cfg.AllWildcard {
			var names []string
			for name := range held {
				if !c.subscribed[next][name] {
					c.subscribed[next][name] = true
					names = append(names, name)
				}
			}
			if len(names) > 0 {
				if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: next, ResourceNamesSubscribe: names}); err != nil {
					return err
				}
			}
		}
		if !synced && c.complete() {
			synced = true
			c.synced <- acked
		}
	}
}

// complete tells whether the client holds every resource of every type, all ACKed.
func (c *adsClient) complete() bool {
	for _, typ := range resourceTypes {
		if len(c.held[typ]) != c.cfg.Counts[typ] {
			return false
		}
	}
	return true
}

// firstWeight is the weight of the first weighted cluster of a RouteConfiguration's first route,
// or 0 when it routes to one cluster.
func firstWeight(a *anypb.Any) (uint32, error) {
	rc := &routev3.RouteConfiguration{}
	if err := a.UnmarshalTo(rc); err != nil {
		return 0, fmt.Errorf("decoding the apex route: %w", err)
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if ws := r.GetRoute().GetWeightedClusters().GetClusters(); len(ws) > 0 {
				return ws[0].GetWeight().GetValue(), nil
			}
			return 0, nil
		}
	}
	return 0, nil
}

// ackLog records, for each apex weight, when each client ACKed the route that carried it.
type ackLog struct {
	n    int
	mu   sync.Mutex
	at   map[uint32][]int64
	done map[uint32]chan struct{}
}

func newAckLog(n int) *ackLog {
	return &ackLog{n: n, at: map[uint32][]int64{}, done: map[uint32]chan struct{}{}}
}

func (l *ackLog) add(w uint32, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[w] = append(l.at[w], t.UnixNano())
	if len(l.at[w]) == l.n {
		close(l.doneLocked(w))
	}
}

// all is closed once every client has ACKed weight w.
func (l *ackLog) all(w uint32) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doneLocked(w)
}

func (l *ackLog) doneLocked(w uint32) chan struct{} {
	if l.done[w] == nil {
		l.done[w] = make(chan struct{})
	}
	return l.done[w]
}

func (l *ackLog) times(w uint32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.at[w]...)
}
