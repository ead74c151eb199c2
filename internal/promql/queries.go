package promql

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultWindow is the window the control plane's figures cover too.
const DefaultWindow = time.Minute

// Range is the window of a query as PromQL writes it: "60s", or a variable a dashboard fills in
// such as "$window".
type Range string

// Over is the range of a window.
func Over(window time.Duration) Range { return Range(Duration(window)) }

// The proxy's metric names and labels (proxy/metrics).
const (
	responseTotal   = "response_total"
	requestTotal    = "request_total"
	latencyBucket   = "response_latency_ms_bucket"
	tcpOpenTotal    = "tcp_open_total"
	tcpCloseTotal   = "tcp_close_total"
	labelDirection  = "direction"
	labelDstService = "dst_service"
	labelDstBackend = "dst_backend"
	labelRoute      = "route"
	labelNamespace  = "namespace" // a scrape target label: the pod's namespace
	labelPod        = "pod"       // a scrape target label: the pod's name
	labelClass      = "classification"
	labelTLS        = "tls"
)

// Matcher selects series by one label: Value is a regular expression when Regexp is set.
type Matcher struct {
	Label, Value string
	Regexp       bool
}

func (m Matcher) String() string {
	op := "="
	if m.Regexp {
		op = "=~"
	}
	return m.Label + op + strconv.Quote(m.Value)
}

// Target is the traffic one kind of `skein stat` row stands for: the series it sums, and the labels
// that tell its rows apart.
type Target struct {
	// Matchers select the series; the first is always the direction.
	Matchers []Matcher
	// By are the labels each row of the answer keeps; none gives one row.
	By []string
	// TCP says whether the TCP metrics carry the same labels, so that TCPConnections means something.
	TCP bool
}

// Service is the traffic meshed clients sent to a Service (by name; every Service of the namespace
// when name is empty, every namespace's too when namespace is empty), seen by the clients' proxies.
// Rows are told apart by dst_service, "<name>.<namespace>".
func Service(namespace, name string) Target {
	return Target{Matchers: []Matcher{outbound(), serviceMatcher(labelDstService, namespace, name)}, By: []string{labelDstService}, TCP: true}
}

// Route is a Service's traffic per route ("default" for the catch-all).
func Route(namespace, name string) Target {
	return Target{Matchers: []Matcher{outbound(), serviceMatcher(labelDstService, namespace, name)}, By: []string{labelDstService, labelRoute}}
}

// Backends is the traffic sent to a TrafficSplit's apex Service, per backend the proxies chose
// (dst_backend, "<name>.<namespace>").
func Backends(namespace, apex string) Target {
	return Target{Matchers: []Matcher{outbound(), serviceMatcher(labelDstService, namespace, apex)}, By: []string{labelDstBackend}}
}

// Workload is the traffic a workload's pods received, seen by their own proxies: Prometheus knows
// pods, not workloads, so the caller names the workload's pods (at least one). It gives one row.
func Workload(namespace string, pods []string) Target {
	quoted := make([]string, len(pods))
	for i, p := range pods {
		quoted[i] = regexp.QuoteMeta(p)
	}
	return Target{Matchers: []Matcher{inbound(), {Label: labelNamespace, Value: namespace},
		{Label: labelPod, Value: strings.Join(quoted, "|"), Regexp: true}}, TCP: true}
}

// Namespace is the traffic the meshed pods of a namespace received (every namespace, a row each,
// when namespace is empty).
func Namespace(namespace string) Target {
	t := Target{Matchers: []Matcher{inbound()}, By: []string{labelNamespace}, TCP: true}
	if namespace != "" {
		t.Matchers = append(t.Matchers, Matcher{Label: labelNamespace, Value: namespace})
	}
	return t
}

func outbound() Matcher { return Matcher{Label: labelDirection, Value: "outbound"} }
func inbound() Matcher  { return Matcher{Label: labelDirection, Value: "inbound"} }

// serviceMatcher matches "<name>.<namespace>" values, either part left open when empty.
func serviceMatcher(label, namespace, name string) Matcher {
	if namespace != "" && name != "" {
		return Matcher{Label: label, Value: name + "." + namespace}
	}
	n, ns := "[^.]+", ".+"
	if name != "" {
		n = regexp.QuoteMeta(name)
	}
	if namespace != "" {
		ns = regexp.QuoteMeta(namespace)
	}
	return Matcher{Label: label, Value: n + `\.` + ns, Regexp: true}
}

// SuccessRate is the share of responses classified a success, from 0 to 1; NaN where there were
// none in the window.
func (t Target) SuccessRate(window Range) string {
	return t.share(responseTotal, window, Matcher{Label: labelClass, Value: "success"})
}

// RPS is responses per second over the window: their increase divided by the window's seconds,
// which is what rate() is.
func (t Target) RPS(window Range) string {
	return fmt.Sprintf("sum%s(rate(%s[%s]))", t.by(), t.selector(responseTotal), window)
}

// Quantile is the latency in milliseconds under which the fraction q of the window's responses
// came, interpolated within the histogram's buckets.
func (t Target) Quantile(q float64, window Range) string {
	by := append([]string{"le"}, t.By...)
	return fmt.Sprintf("histogram_quantile(%s, sum by (%s) (increase(%s[%s])))",
		strconv.FormatFloat(q, 'f', -1, 64), strings.Join(by, ", "), t.selector(latencyBucket), window)
}

// TCPConnections is the number of TCP connections open now, opened less closed; "" when the
// target's labels are not on the TCP metrics (routes and TrafficSplit backends). A proxy has no
// closed series before its first connection closes, so none counts as 0 closed.
func (t Target) TCPConnections() string {
	if !t.TCP {
		return ""
	}
	open := fmt.Sprintf("sum%s(%s)", t.by(), t.selector(tcpOpenTotal))
	return fmt.Sprintf("%s - (sum%s(%s) or %s * 0)", open, t.by(), t.selector(tcpCloseTotal), open)
}

// MTLSCoverage is the share of the window's requests that came over mTLS, from 0 to 1.
func (t Target) MTLSCoverage(window Range) string {
	return t.share(requestTotal, window, Matcher{Label: labelTLS, Value: "true"})
}

// share is the part of a counter's increase that also matches part. A row with none of that part
// has no series for it, so the whole, times 0, stands in: 0%, rather than no row at all.
func (t Target) share(metric string, window Range, part Matcher) string {
	whole := t.sumIncrease(metric, window)
	return fmt.Sprintf("(%s or %s * 0) / %s", t.sumIncrease(metric, window, part), whole, whole)
}

func (t Target) sumIncrease(metric string, window Range, extra ...Matcher) string {
	return fmt.Sprintf("sum%s(increase(%s[%s]))", t.by(), t.selector(metric, extra...), window)
}

func (t Target) by() string {
	if len(t.By) == 0 {
		return ""
	}
	return " by (" + strings.Join(t.By, ", ") + ") "
}

func (t Target) selector(metric string, extra ...Matcher) string {
	ms := make([]string, 0, len(t.Matchers)+len(extra))
	for _, m := range append(append([]Matcher{}, t.Matchers...), extra...) {
		ms = append(ms, m.String())
	}
	return metric + "{" + strings.Join(ms, ",") + "}"
}

// Duration writes d as a PromQL duration: whole seconds when it is, milliseconds otherwise.
func Duration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// CheckWindow says what is wrong with a window for these queries.
func CheckWindow(d time.Duration) error {
	if d < time.Second || d%time.Millisecond != 0 {
		return fmt.Errorf("window %s: want a whole number of milliseconds, at least 1s", d)
	}
	return nil
}
