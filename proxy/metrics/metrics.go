// Package metrics records what the proxy carries, under Linkerd's metric names where they mean the
// same thing, so that dashboards and queries written for those work here. Label values are bounded:
// authorities beyond MaxAuthorities are counted under "other".
package metrics

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// OtherAuthority is the label value of authorities beyond the bound.
const OtherAuthority = "other"

// latencyBuckets are response latencies in milliseconds.
var latencyBuckets = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// Proxy holds the proxy's metrics.
type Proxy struct {
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	tcpOpen   *prometheus.CounterVec
	tcpClose  *prometheus.CounterVec
	tcpRead   *prometheus.CounterVec
	tcpWrite  *prometheus.CounterVec

	maxAuthorities int
	mu             sync.Mutex
	authorities    map[string]bool
}

// New registers the proxy's metrics on reg.
func New(reg prometheus.Registerer, maxAuthorities int) *Proxy {
	http := []string{"direction", "authority"}
	tcp := []string{"direction", "tls"}
	p := &Proxy{
		requests:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "request_total", Help: "HTTP requests received."}, http),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "response_total", Help: "HTTP responses sent, by status code and classification."}, append(http, "status_code", "classification")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "response_latency_ms", Help: "Time to the response's headers, in milliseconds.",
			Buckets: latencyBuckets}, append(http, "classification")),
		tcpOpen:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_open_total", Help: "TCP connections opened."}, tcp),
		tcpClose:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_close_total", Help: "TCP connections closed."}, tcp),
		tcpRead:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_read_bytes_total", Help: "Bytes read from clients."}, tcp),
		tcpWrite:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcp_write_bytes_total", Help: "Bytes written to clients."}, tcp),
		maxAuthorities: maxAuthorities,
		authorities:    map[string]bool{},
	}
	reg.MustRegister(p.requests, p.responses, p.latency, p.tcpOpen, p.tcpClose, p.tcpRead, p.tcpWrite)
	return p
}

// authority bounds the authority label.
func (p *Proxy) authority(a string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.authorities[a] {
		return a
	}
	if len(p.authorities) >= p.maxAuthorities {
		return OtherAuthority
	}
	p.authorities[a] = true
	return a
}

// HTTP wraps a handler to count its requests and responses and time them.
func (p *Proxy) HTTP(direction string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := p.authority(r.Host)
		p.requests.WithLabelValues(direction, auth).Inc()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		class := "success"
		if rec.status >= 500 {
			class = "failure"
		}
		p.responses.WithLabelValues(direction, auth, strconv.Itoa(rec.status), class).Inc()
		p.latency.WithLabelValues(direction, auth, class).Observe(float64(rec.elapsed(start)) / float64(time.Millisecond))
	})
}

// TCPOpen counts a client connection opened and returns it wrapped to count its bytes; done counts
// it closed.
func (p *Proxy) TCPOpen(direction string, tls bool, conn net.Conn) (counted net.Conn, done func()) {
	t := strconv.FormatBool(tls)
	p.tcpOpen.WithLabelValues(direction, t).Inc()
	c := &countingConn{Conn: conn}
	return c, func() {
		p.tcpClose.WithLabelValues(direction, t).Inc()
		p.tcpRead.WithLabelValues(direction, t).Add(float64(c.read.Load()))
		p.tcpWrite.WithLabelValues(direction, t).Add(float64(c.written.Load()))
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

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
