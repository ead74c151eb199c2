// Package metrics records what the proxy carries, under Linkerd's metric names where they mean the
// same thing, so that dashboards and queries written for those work here. Label values are bounded:
// authorities and peer identities beyond MaxAuthorities are counted under "other"; services and
// routes come from the proxy's configuration, which bounds them already.
package metrics

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
	// Gateway is what a multicluster gateway forwards from linked clusters: client_id is the
	// caller in the linked cluster, dst_service and server_id where the gateway sent it.
	Gateway = "gateway"
)

// OtherAuthority is the label value of authorities (and peer identities) beyond the bound.
const OtherAuthority = "other"

// DefaultRoute names the route that takes the requests no other route matched.
const DefaultRoute = "default"

// Classifications of responses: a failure is a 5xx, including the proxy's own answers when no
// endpoint could serve.
const (
	Success = "success"
	Failure = "failure"
)

// latencyBuckets are response latencies in milliseconds.
var latencyBuckets = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// httpLabels are the labels of every HTTP metric, in this order; both directions carry all of them,
// empty where they do not apply, so that one query covers both.
var httpLabels = []string{"direction", "authority", "tls", "dst_service", "dst_backend", "route", "server_id", "client_id"}

// tcpLabels are the labels of the TCP metrics.
var tcpLabels = []string{"direction", "tls", "dst_service"}

// Proxy holds the proxy's metrics.
type Proxy struct {
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	tcpOpen   *prometheus.CounterVec
	tcpClose  *prometheus.CounterVec
	tcpRead   *prometheus.CounterVec
	tcpWrite  *prometheus.CounterVec
	refused   *prometheus.CounterVec

	authorities, serverIDs, clientIDs *bounded

	// series caches the metrics of each label set seen, so that a request finds them with one map
	// lookup instead of hashing its label values into three vectors and allocating them: they are
	// as bounded as the vectors' own series.
	series sync.Map // seriesKey -> *seriesMetrics
}

// seriesKey is the label values of a request's metrics, but for its status.
type seriesKey struct {
	direction, authority                              string
	tls                                               bool
	dstService, dstBackend, route, serverID, clientID string
	status                                            int
}

type seriesMetrics struct {
	requests, responses prometheus.Counter
	latency             prometheus.Observer
}

func (p *Proxy) seriesFor(k seriesKey) *seriesMetrics {
	if m, ok := p.series.Load(k); ok {
		return m.(*seriesMetrics)
	}
	class := Success
	if k.status >= 500 {
		class = Failure
	}
	values := []string{k.direction, k.authority, strconv.FormatBool(k.tls), k.dstService, k.dstBackend, k.route, k.serverID, k.clientID}
	m := &seriesMetrics{
		requests:  p.requests.WithLabelValues(values...),
		responses: p.responses.WithLabelValues(append(values, strconv.Itoa(k.status), class)...),
		latency:   p.latency.WithLabelValues(append(values, class)...),
	}
	actual, _ := p.series.LoadOrStore(k, m)
	return actual.(*seriesMetrics)
}

// New registers the proxy's metrics on reg. maxAuthorities bounds the distinct authorities, and
// separately the distinct peer identities of each direction.
func New(reg prometheus.Registerer, maxAuthorities int) *Proxy {
	p := &Proxy{
		requests:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "request_total", Help: "HTTP requests received."}, httpLabels),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "response_total", Help: "HTTP responses sent, by status code and classification."}, append(httpLabels[:len(httpLabels):len(httpLabels)], "status_code", "classification")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "response_latency_ms", Help: "Time to the response's headers, in milliseconds.",
			Buckets: latencyBuckets}, append(httpLabels[:len(httpLabels):len(httpLabels)], "classification")),
		tcpOpen:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_open_total", Help: "TCP connections opened."}, tcpLabels),
		tcpClose: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_close_total", Help: "TCP connections closed."}, tcpLabels),
		tcpRead:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_read_bytes_total", Help: "Bytes read from clients."}, tcpLabels),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_write_bytes_total", Help: "Bytes written to clients."}, tcpLabels),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_refused_total",
			Help: "Connections a multicluster gateway refused, by reason: tls (no valid client certificate), preamble (no readable target), not_exported (a target that is no exported service here)."}, []string{"reason"}),
		authorities: newBounded(maxAuthorities),
		serverIDs:   newBounded(maxAuthorities),
		clientIDs:   newBounded(maxAuthorities),
	}
	reg.MustRegister(p.requests, p.responses, p.latency, p.tcpOpen, p.tcpClose, p.tcpRead, p.tcpWrite, p.refused)
	return p
}

// bounded admits the first max distinct values of a label; the others become OtherAuthority.
type bounded struct {
	max  int
	mu   sync.Mutex
	seen map[string]bool
}

func newBounded(max int) *bounded { return &bounded{max: max, seen: map[string]bool{}} }

func (b *bounded) value(v string) string {
	if v == "" {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[v] {
		return v
	}
	if len(b.seen) >= b.max {
		return OtherAuthority
	}
	b.seen[v] = true
	return v
}

// Labels are what a request's metrics say of where it went. The outbound router fills them in as
// it routes (LabelsFrom); the inbound side knows them from the connection.
type Labels struct {
	// TLS is true when the request crossed the network over mTLS.
	TLS bool
	// DstService is the Service addressed, as "name.namespace"; empty when unknown.
	DstService string
	// DstBackend is the Service whose endpoint was chosen: DstService, or a TrafficSplit backend.
	DstBackend string
	// Route names the route that matched.
	Route string
	// ServerID is the identity the endpoint's proxy presented (outbound).
	ServerID string
	// ClientID is the identity the client's proxy presented (inbound).
	ClientID string
}

type labelsKey struct{}

// LabelsFrom returns the labels of the request whose context ctx is, for the router to fill in; nil
// outside a handler wrapped by HTTP for the Outbound or Gateway direction.
func LabelsFrom(ctx context.Context) *Labels {
	if l, ok := ctx.Value(labelsKey{}).(*Labels); ok {
		return l
	}
	l, _ := ctx.Value(serialLabelsKey{}).(*Labels)
	return l
}

type serialLabelsKey struct{}

// WithSerialLabels gives a connection whose requests come one at a time (HTTP/1's) the labels of
// its requests, in its context: HTTP then fills them in afresh for each request, rather than give
// every request a context and a copy of itself to carry labels of its own.
func WithSerialLabels(ctx context.Context) context.Context {
	return context.WithValue(ctx, serialLabelsKey{}, new(Labels))
}

// ServiceName turns an authority of the mesh ("web.shop.svc.cluster.local:80") into the Service's
// "name.namespace"; another name is kept as its host.
func ServiceName(authority string) string {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	if i := strings.Index(host, ".svc"); i > 0 && (len(host) == i+4 || host[i+4] == '.') {
		host = host[:i]
	}
	return host
}

// HTTP wraps a handler to count its requests and responses and time them, under base's labels as
// the handler leaves them.
func (p *Proxy) HTTP(direction string, base Labels, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		// The outbound router (in a gateway too) fills labels in; the inbound side knows them all
		// from its connection, and spares every request a copy made to carry them.
		var slot *Labels
		if direction != Inbound {
			if slot, _ = r.Context().Value(serialLabelsKey{}).(*Labels); slot == nil {
				slot = new(Labels)
				r = r.WithContext(context.WithValue(r.Context(), labelsKey{}, slot))
			}
			*slot = base
		}
		next.ServeHTTP(rec, r)
		labels := base
		if slot != nil {
			labels = *slot
		}
		m := p.seriesFor(seriesKey{direction: direction, authority: p.authorities.value(r.Host), tls: labels.TLS, dstService: labels.DstService,
			dstBackend: labels.DstBackend, route: labels.Route, serverID: p.serverIDs.value(labels.ServerID),
			clientID: p.clientIDs.value(labels.ClientID), status: rec.status})
		m.requests.Inc()
		m.responses.Inc()
		m.latency.Observe(float64(rec.elapsed(start)) / float64(time.Millisecond))
	})
}

// Reasons a gateway refuses a connection.
const (
	RefusedTLS         = "tls"
	RefusedPreamble    = "preamble"
	RefusedNotExported = "not_exported"
)

// GatewayRefused counts a connection a gateway refused.
func (p *Proxy) GatewayRefused(reason string) { p.refused.WithLabelValues(reason).Inc() }

// TCPOpen counts a client connection opened and returns it wrapped to count its bytes; done counts
// it closed. dstService is the Service addressed (outbound), "" when unknown or inbound.
func (p *Proxy) TCPOpen(direction string, tls bool, dstService string, conn net.Conn) (counted net.Conn, done func()) {
	values := []string{direction, strconv.FormatBool(tls), dstService}
	p.tcpOpen.WithLabelValues(values...).Inc()
	c := &countingConn{Conn: conn}
	return c, func() {
		p.tcpClose.WithLabelValues(values...).Inc()
		p.tcpRead.WithLabelValues(values...).Add(float64(c.read.Load()))
		p.tcpWrite.WithLabelValues(values...).Add(float64(c.written.Load()))
	}
}

// countingConn counts the bytes read from and written to a client.
type countingConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// CloseWrite half-closes where the connection can, so that splicing passes half-closes through.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// statusRecorder remembers the status and when the headers went out.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	headers time.Time
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.headers.IsZero() {
		s.status, s.headers = code, time.Now()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.headers.IsZero() {
		s.headers = time.Now()
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) elapsed(start time.Time) time.Duration {
	if s.headers.IsZero() {
		return time.Since(start)
	}
	return s.headers.Sub(start)
}

// Flush passes flushes through, which streaming responses (gRPC) need.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// SetHeader replaces the header of a writer that can (see forward.Response), and copies h into it
// otherwise.
func (s *statusRecorder) SetHeader(h http.Header) {
	if hs, ok := s.ResponseWriter.(interface{ SetHeader(http.Header) }); ok {
		hs.SetHeader(h)
		return
	}
	dst := s.ResponseWriter.Header()
	for k, vv := range h {
		dst[k] = vv
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
