// Package destinations is what the proxy knows of where traffic may go: services, by authority and by
// virtual address, and their endpoints with the identity each must present. A Source provides it: a
// static file now, the control plane over xDS later.
package destinations

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Endpoint is one address that serves a service.
type Endpoint struct {
	// Addr is the endpoint's address and port.
	Addr netip.AddrPort `json:"addr"`
	// Identity is the SPIFFE ID its proxy presents; empty for an endpoint without a proxy, which is
	// reached in plain text.
	Identity string `json:"identity,omitempty"`
	// GatewayTarget, when set, makes the endpoint a linked cluster's gateway, which forwards to
	// the service with this authority in its own cluster (see xdsnames.FieldGatewayTarget).
	GatewayTarget string `json:"gatewayTarget,omitempty"`
}

// Service is a destination reached through its endpoints.
type Service struct {
	// Authority is host:port, as clients name the service in HTTP requests.
	Authority string `json:"authority"`
	// Aliases are other names of the service (shorter DNS forms).
	Aliases []string `json:"aliases,omitempty"`
	// Addrs are the service's virtual addresses (ClusterIPs with the port).
	Addrs []netip.AddrPort `json:"addrs,omitempty"`
	// Opaque services are carried as TCP, without protocol detection.
	Opaque bool `json:"opaque,omitempty"`
	// Exported services may be reached from linked clusters through this cluster's gateway.
	Exported bool `json:"exported,omitempty"`
	// Endpoints serve the service.
	Endpoints []Endpoint `json:"endpoints"`
	// Draining endpoints take no new requests but are still known by address, with their identity.
	Draining []Endpoint `json:"draining,omitempty"`
	// Backends, when there are any, take the service's requests instead of its endpoints (a
	// TrafficSplit): each request goes to one backend, chosen in proportion to the weights.
	Backends []Backend `json:"backends,omitempty"`
	// Matches come first: a request that one matches goes to its backend (a header canary).
	Matches []Match `json:"matches,omitempty"`
}

// Match sends the HTTP requests it matches to one backend.
type Match struct {
	// Name names the route in metrics; "" gives "match-<index>".
	Name string `json:"name,omitempty"`
	// PathPrefix, when set, must begin the request's path.
	PathPrefix string `json:"pathPrefix,omitempty"`
	// Headers must all be present with exactly these values.
	Headers []HeaderMatch `json:"headers,omitempty"`
	// Backend takes the matching requests.
	Backend Backend `json:"backend"`
}

// HeaderMatch is a header a request must carry, with its exact value.
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (m *Match) matches(path string, h http.Header) bool {
	if !strings.HasPrefix(path, m.PathPrefix) {
		return false
	}
	for _, hm := range m.Headers {
		if !slices.Contains(h.Values(hm.Name), hm.Value) {
			return false
		}
	}
	return true
}

// Choose returns the endpoints for one HTTP request: those of the first match's backend, or else
// as Pick does with r.
func (s *Service) Choose(path string, h http.Header, r float64) []Endpoint {
	return s.Route(path, h, r).Endpoints
}

// DefaultRoute names the route of the requests that no match took.
const DefaultRoute = "default"

// Choice is where one request goes, and why: for metrics, the route that matched and the backend
// (the service itself, or one of its TrafficSplit backends) chosen.
type Choice struct {
	Route     string
	Backend   string
	Endpoints []Endpoint
}

// Route chooses for one HTTP request: the first match's backend, or else as Pick does with r.
func (s *Service) Route(path string, h http.Header, r float64) Choice {
	for i := range s.Matches {
		if m := &s.Matches[i]; m.matches(path, h) {
			name := m.Name
			if name == "" {
				name = "match-" + strconv.Itoa(i)
			}
			return Choice{Route: name, Backend: m.Backend.Name, Endpoints: m.Backend.Endpoints}
		}
	}
	backend, eps := s.pick(r)
	return Choice{Route: DefaultRoute, Backend: backend, Endpoints: eps}
}

// Backend is one weighted share of a split service.
type Backend struct {
	// Name is the backend service's authority.
	Name string `json:"name"`
	// Weight is the backend's share relative to the others'.
	Weight uint32 `json:"weight"`
	// Endpoints serve the backend.
	Endpoints []Endpoint `json:"endpoints"`
}

// Pick returns the endpoints to send one request to: the service's own, or those of a backend
// chosen by weight with r, a number in [0, 1). A backend with no endpoints gets no share: it may
// have lost them before the control plane's new weights arrive, and its requests would go nowhere.
func (s *Service) Pick(r float64) []Endpoint {
	_, eps := s.pick(r)
	return eps
}

// pick is Pick, also naming the backend chosen: the service's own authority when it has none.
func (s *Service) pick(r float64) (string, []Endpoint) {
	var total uint64
	for _, b := range s.Backends {
		if len(b.Endpoints) > 0 {
			total += uint64(b.Weight)
		}
	}
	if total == 0 {
		return s.Authority, s.Endpoints
	}
	n := uint64(r * float64(total))
	var last *Backend
	for i := range s.Backends {
		b := &s.Backends[i]
		if len(b.Endpoints) == 0 {
			continue
		}
		if n < uint64(b.Weight) {
			return b.Name, b.Endpoints
		}
		n -= uint64(b.Weight)
		last = b
	}
	return last.Name, last.Endpoints
}

// Snapshot is a consistent view of the destinations; it is never changed once published.
type Snapshot struct {
	Services []Service `json:"services"`

	byAuthority map[string]*Service
	byAddr      map[netip.AddrPort]*Service
	endpoints   map[netip.AddrPort]Endpoint
}

// NewSnapshot indexes services.
func NewSnapshot(services []Service) (*Snapshot, error) {
	s := &Snapshot{Services: services, byAuthority: map[string]*Service{}, byAddr: map[netip.AddrPort]*Service{}, endpoints: map[netip.AddrPort]Endpoint{}}
	for i := range s.Services {
		svc := &s.Services[i]
		if !strings.Contains(svc.Authority, ":") {
			return nil, fmt.Errorf("service %q: authority must be host:port", svc.Authority)
		}
		s.byAuthority[strings.ToLower(svc.Authority)] = svc
		for _, a := range svc.Aliases {
			if _, taken := s.byAuthority[strings.ToLower(a)]; !taken {
				s.byAuthority[strings.ToLower(a)] = svc
			}
		}
		for _, a := range svc.Addrs {
			s.byAddr[a] = svc
		}
		all := append(svc.Endpoints[:len(svc.Endpoints):len(svc.Endpoints)], svc.Draining...)
		for _, b := range svc.Backends {
			all = append(all[:len(all):len(all)], b.Endpoints...)
		}
		for _, m := range svc.Matches {
			all = append(all[:len(all):len(all)], m.Backend.Endpoints...)
		}
		for _, e := range all {
			if !e.Addr.IsValid() {
				return nil, fmt.Errorf("service %q: an endpoint has no address", svc.Authority)
			}
			s.endpoints[e.Addr] = e
		}
	}
	return s, nil
}

// ByAuthority finds a service by the host:port a request names.
func (s *Snapshot) ByAuthority(authority string) *Service {
	return s.byAuthority[strings.ToLower(authority)]
}

// ByAddr finds a service by one of its virtual addresses.
func (s *Snapshot) ByAddr(a netip.AddrPort) *Service { return s.byAddr[a] }

// Endpoint finds what is known of an endpoint address: its identity, for a client that dials a pod directly.
func (s *Snapshot) Endpoint(a netip.AddrPort) (Endpoint, bool) {
	e, ok := s.endpoints[a]
	return e, ok
}

// Source provides the current snapshot.
type Source interface {
	Snapshot() *Snapshot
}

// Static is a Source that never changes.
type Static struct{ snap *Snapshot }

// NewStatic returns a Source of one snapshot.
func NewStatic(s *Snapshot) *Static { return &Static{snap: s} }

// Snapshot returns the snapshot.
func (s *Static) Snapshot() *Snapshot { return s.snap }

// File is a Source read from a JSON file ({"services": [...]}) and read again when it changes. A file
// that cannot be read or parsed leaves the last good snapshot in force.
type File struct {
	path    string
	current atomic.Pointer[Snapshot]
	modTime time.Time
	// OnError is told about a file that could not be used.
	OnError func(error)
}

// NewFile reads path once; it must be valid.
func NewFile(path string) (*File, error) {
	f := &File{path: path, OnError: func(error) {}}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Snapshot returns the last good snapshot.
func (f *File) Snapshot() *Snapshot { return f.current.Load() }

// Watch re-reads the file every interval when its modification time changed, until stop is closed.
func (f *File) Watch(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if fi, err := os.Stat(f.path); err == nil && !fi.ModTime().Equal(f.modTime) {
				if err := f.reload(); err != nil {
					f.OnError(err)
				}
			}
		}
	}
}

func (f *File) reload() error {
	fi, err := os.Stat(f.path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	var doc struct {
		Services []Service `json:"services"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("destinations file %s: %w", f.path, err)
	}
	snap, err := NewSnapshot(doc.Services)
	if err != nil {
		return fmt.Errorf("destinations file %s: %w", f.path, err)
	}
	f.current.Store(snap)
	f.modTime = fi.ModTime()
	return nil
}
