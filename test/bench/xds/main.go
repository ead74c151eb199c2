// Command xds measures how the control plane's xDS service scales: `make bench-xds` runs it.
//
// It starts a real API server, cert-manager and the control plane (in this process, as the suites
// do), and fills the cluster with 1,000 Services, each backed by 10 meshed pods listed in an
// EndpointSlice: 10,000 endpoints, each carrying its pod's identity. Once the xDS cache holds every
// Service's resources, 1,000 simulated proxies connect from a second process (this binary run again
// as `xds clients`): each over its own TLS connection with a workload certificate for its pod's
// ServiceAccount, naming that pod as its node, on one delta ADS stream. Each subscribes to every
// Listener and Cluster, then by name to the RouteConfigurations and ClusterLoadAssignments they name,
// and ACKs every response.
//
// It reports how long the initial sync of all clients took; the control plane's heap per connected
// client (heap in use after a forced GC in the control plane's process, with every client synced,
// minus the same before any connected, divided by the number of clients; the clients' own memory is
// in the other process); and, after a TrafficSplit is created for one Service and its weights changed
// several times, the time from each API write until each client ACKed the new RouteConfiguration: p50,
// p99 and max over the clients, for each change, and their medians over the changes. The last line is
//
//	RESULT ack_p50_ms=<x> ack_p99_ms=<x> mb_per_client=<x>
//
// The clients share the machine with the control plane and the API server; nothing here asserts on
// the numbers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc/grpclog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/test/framework"
)

type options struct {
	services, endpoints int
	reps                int
	settle              time.Duration
	byName              bool
	cpuProfile          string
	heapProfile         string
}

// The targets, printed beside the results.
const (
	targetP99         = time.Second
	targetMBPerClient = 0.5
)

// mb is the unit memory is reported in.
const mb = 1 << 20

func main() {
	if len(os.Args) > 1 && os.Args[1] == "clients" {
		if err := clientsMain(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "clients: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.services, "services", 1000, "Services in the cluster, and simulated proxies, one per Service")
	flag.IntVar(&o.endpoints, "endpoints-per-service", 10, "meshed pods behind each Service")
	flag.IntVar(&o.reps, "reps", 5, "TrafficSplit weight changes measured; medians are reported")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait, once the control plane is quiet, before measuring its heap")
	flag.BoolVar(&o.byName, "by-name", false, "subscribe to RouteConfigurations and ClusterLoadAssignments by name, as grpc-go does, rather than by wildcard as skein-proxy does")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the control plane's process over the weight changes to this file")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "write a heap profile of the control plane's process, with every client synced, to this file")
	flag.Parse()
	if o.services < 3 || o.endpoints < 1 || o.reps < 1 || o.reps > 40 {
		fmt.Fprintln(os.Stderr, "bench-xds: -services must be at least 3 (a TrafficSplit apex and two backends), -endpoints-per-service and -reps positive, -reps at most 40")
		os.Exit(2)
	}
	// Clients that disconnect as the run ends make the server log warnings; errors still show.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
	r, err := run(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-xds: FAILED: %v\n", err)
		os.Exit(1)
	}
	// After everything has stopped, so that nothing prints after the RESULT line.
	r.report()
}

var start = time.Now()

// step says what the run is doing, with the time since it started.
func step(format string, a ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}

// run sets up, measures, and stops everything it started, whatever happens.
func run(o options) (r *result, err error) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// Each client's connection is a descriptor here, besides the API server's and informers'.
	if err := raiseFileLimit(o.services + 1000); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "skein-bench-xds-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "bench-xds: the control plane's log and the clients' configuration are in %s\n", dir)
		}
	}()
	logFile, err := os.Create(filepath.Join(dir, "control-plane.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	ctrl.SetLogger(zap.New(zap.WriteTo(logFile)))

	step("Starting the API server, cert-manager and the control plane")
	m, err := startMesh(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, m.stop()) }()
	step("Creating %d Services, each with %d meshed pods in one EndpointSlice", o.services, o.endpoints)
	if err := m.populate(ctx, o.services, o.endpoints); err != nil {
		return nil, err
	}
	r = &result{o: o}
	path, err := prepareClients(m, o, dir, r)
	if err != nil {
		return nil, err
	}
	if r.before, err = settledMemory(ctx, o.settle); err != nil {
		return nil, err
	}

	step("Connecting %d clients, from a separate process", o.services)
	clients, err := startClients(path)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, clients.stop()) }()
	synced, err := clients.next(ctx, "synced", 10*time.Minute)
	if err != nil {
		return nil, err
	}
	r.sync = millisSince(synced.Start, synced.At)
	step("Every client holds every resource, all ACKed")
	if r.after, err = settledMemory(ctx, o.settle); err != nil {
		return nil, err
	}
	if o.heapProfile != "" {
		if err := writeHeapProfile(o.heapProfile); err != nil {
			return nil, err
		}
	}

	if err := changeSplit(ctx, m, clients, o, r); err != nil {
		return nil, err
	}
	r.end = sampleMemory()
	return r, nil
}

// prepareClients writes the client process's configuration, with a certificate for each client,
// and returns its path.
func prepareClients(m *mesh, o options, dir string, r *result) (string, error) {
	cfg := &clientsConfig{
		Addr: m.cp.XDSAddr, ServerName: framework.XDSServerName, Anchors: m.anchors, Counts: map[string]int{},
		Apex: xdsnames.Authority(serviceName(0), namespace, servicePort), AllWildcard: !o.byName,
	}
	for _, typ := range resourceTypes {
		cfg.Counts[typ] = m.cp.XDS.Cache.Len(typ)
		r.resources += cfg.Counts[typ]
	}
	step("The xDS cache holds %d resources of each type; signing %d client certificates", cfg.Counts[resourceTypes[0]], o.services)
	var err error
	if cfg.Clients, err = m.certificates(o.services); err != nil {
		return "", err
	}
	return writeClientsConfig(dir, cfg)
}

// changeSplit creates a TrafficSplit, then changes its weights o.reps times, and measures how long
// each change takes to reach every client.
func changeSplit(ctx context.Context, m *mesh, clients *clientProcess, o options, r *result) error {
	step("Creating a TrafficSplit: %s to %s and %s, 50/50", serviceName(0), serviceName(1), serviceName(2))
	ts := &meshv1.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "bench"},
		Spec: meshv1.TrafficSplitSpec{Service: serviceName(0), Backends: []meshv1.TrafficSplitBackend{
			{Service: serviceName(1), Weight: 50}, {Service: serviceName(2), Weight: 50},
		}},
	}
	created, err := measureChange(ctx, clients, 50, func() error { return m.k8s.Create(ctx, ts) })
	if err != nil {
		return err
	}
	fmt.Printf("  created:  %s\n", created)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	step("Changing its weights %d times", o.reps)
	for rep := 1; rep <= o.reps; rep++ {
		w := int32(50 + rep)
		base := ts.DeepCopy()
		ts.Spec.Backends[0].Weight, ts.Spec.Backends[1].Weight = w, 100-w
		l, err := measureChange(ctx, clients, uint32(w), func() error { return m.k8s.Patch(ctx, ts, client.MergeFrom(base)) })
		if err != nil {
			return err
		}
		fmt.Printf("  %d/%d %d/%d: %s\n", rep, o.reps, w, 100-w, l)
		r.changes = append(r.changes, l)
	}
	return nil
}

// result is what a run measured.
type result struct {
	o                  options
	resources          int // per client
	sync               []float64
	before, after, end memory
	changes            []latencies
}

// report prints the summary, and the RESULT line last.
func (r *result) report() {
	o := r.o
	n := float64(o.services)
	perClient := (float64(r.after.heapInuse) - float64(r.before.heapInuse)) / n / mb
	p50 := median(r.changes, func(l latencies) float64 { return l.p50 })
	p99 := median(r.changes, func(l latencies) float64 { return l.p99 })
	first := median(r.changes, func(l latencies) float64 { return l.first })
	worst := median(r.changes, func(l latencies) float64 { return l.max })
	subs := "every type by wildcard, as skein-proxy does"
	if o.byName {
		subs = "Listeners and Clusters by wildcard, RouteConfigurations and ClusterLoadAssignments by name, as grpc-go does (-by-name)"
	}
	fmt.Printf("\n%d clients, %d Services, %d endpoints; %d resources per client, subscribed to %s\n",
		o.services, o.services, o.services*o.endpoints, r.resources, subs)
	fmt.Printf("Initial sync, all clients connecting at once: the last client synced after %.1fs (p50 %.1fs, from the first dial)\n",
		percentile(r.sync, 1)/1000, percentile(r.sync, 0.5)/1000)
	fmt.Printf("Control plane's heap in use (runtime.MemStats after runtime.GC, in its own process; the clients run in another):\n")
	fmt.Printf("  before any client %.1f MB, with every client synced %.1f MB, after the changes %.1f MB: %.3f MB per client\n",
		float64(r.before.heapInuse)/mb, float64(r.after.heapInuse)/mb, float64(r.end.heapInuse)/mb, perClient)
	fmt.Printf("  besides the heap: goroutine stacks %.1f KB and %.1f goroutines per client\n",
		(float64(r.after.stackInuse)-float64(r.before.stackInuse))/n/1024, float64(r.after.goroutines-r.before.goroutines)/n)
	fmt.Printf("TrafficSplit weight change to ACK by every client, medians of %d changes: first client %.1f ms, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", o.reps, first, p50, p99, worst)
	fmt.Printf("Targets: p99 under %d ms: %s; under %.1f MB per client: %s\n",
		targetP99.Milliseconds(), verdict(p99 < float64(targetP99.Milliseconds())), targetMBPerClient, verdict(perClient < targetMBPerClient))
	fmt.Printf("RESULT ack_p50_ms=%.1f ack_p99_ms=%.1f mb_per_client=%.3f\n", p50, p99, perClient)
}

// measureChange makes a change with write and measures, per client, the time from just before the
// write until the client ACKed the apex route with weight w. It first waits for the control plane to
// go quiet: the server handles a change's ACKs after the clients sent them, and that work would
// otherwise be counted in the next change.
func measureChange(ctx context.Context, clients *clientProcess, w uint32, write func() error) (latencies, error) {
	if err := waitQuiet(ctx); err != nil {
		return latencies{}, err
	}
	t0 := time.Now()
	if err := write(); err != nil {
		return latencies{}, fmt.Errorf("writing the TrafficSplit: %w", err)
	}
	acked, err := clients.waitWeight(ctx, w)
	if err != nil {
		return latencies{}, err
	}
	return summarize(millisSince(t0.UnixNano(), acked.At)), nil
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// waitQuiet waits for this process (the control plane) to use less than a tenth of a CPU over a
// quarter of a second.
func waitQuiet(ctx context.Context) error {
	const window, busy = 250 * time.Millisecond, 25 * time.Millisecond
	cpu := func() time.Duration {
		var u syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
			return 0
		}
		return time.Duration(u.Utime.Nano() + u.Stime.Nano())
	}
	return waitFor(ctx, time.Minute, "the control plane to go quiet", func() bool {
		before := cpu()
		time.Sleep(window)
		return cpu()-before < busy
	})
}

// memory is what the control plane's process holds.
type memory struct {
	heapInuse, stackInuse uint64
	goroutines            int
}

// settledMemory samples the heap once the control plane has been quiet for a while.
func settledMemory(ctx context.Context, settle time.Duration) (memory, error) {
	if err := waitQuiet(ctx); err != nil {
		return memory{}, err
	}
	time.Sleep(settle)
	return sampleMemory(), nil
}

// sampleMemory collects garbage, twice so that what finalizers freed goes too, and reads the heap.
func sampleMemory() memory {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heapInuse: ms.HeapInuse, stackInuse: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	return errors.Join(pprof.WriteHeapProfile(f), f.Close())
}

// raiseFileLimit raises the soft limit on open files to the hard one, and fails if that is below need.
func raiseFileLimit(need int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raising the open files limit to %d: %w", l.Max, err)
		}
	}
	if l.Cur < uint64(need) {
		return fmt.Errorf("the open files limit is %d, below the %d needed (raise it with ulimit -n)", l.Cur, need)
	}
	return nil
}

// latencies summarize, over the clients, the times for one change.
// The first client's time is the pipeline's (API server, informer, compiler, cache, one stream);
// the spread after it is the cache notifying every client's stream.
type latencies struct{ first, p50, p99, max float64 }

func (l latencies) String() string {
	return fmt.Sprintf("first %6.1f ms  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms", l.first, l.p50, l.p99, l.max)
}

func summarize(ms []float64) latencies {
	return latencies{first: slices.Min(ms), p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), max: percentile(ms, 1)}
}

// millisSince is each time in at (Unix nanoseconds) less t0, in milliseconds. Both processes read
// the same clock.
func millisSince(t0 int64, at []int64) []float64 {
	ms := make([]float64, len(at))
	for i, t := range at {
		ms[i] = float64(t-t0) / 1e6
	}
	return ms
}

// percentile is the nearest-rank p-quantile of xs (p in (0, 1]).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(float64(len(s))*p)) - 1
	return s[max(0, min(i, len(s)-1))]
}

// median is the median of one figure over several changes.
func median(ls []latencies, figure func(latencies) float64) float64 {
	xs := make([]float64, len(ls))
	for i, l := range ls {
		xs[i] = figure(l)
	}
	return percentile(xs, 0.5)
}
