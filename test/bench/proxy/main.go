// Command proxy measures skein-proxy's latency, throughput and cost on a real mesh, against no
// proxy at all and against a reference pair of proxies doing the same job: `make bench-proxy` runs
// it (as root) through test/bench/proxy.sh.
//
// It starts what test/proxy's tests start: an API server, cert-manager and the control plane with
// its identity service, and two pods (network namespaces behind proxy-init's iptables rules), a
// client and a server, each with skein-proxy (GOMAXPROCS=1) certified by the identity service. The
// server pod's backend is nginx with one worker answering a small body from memory. The same
// fortio load, from the client pod, then takes three paths to it:
//
//   - direct: straight to the backend, on a port proxy-init skips in both pods;
//   - skein: to the backend's meshed port, redirected to the client's skein-proxy, over mTLS
//     (HTTP/2) to the server's skein-proxy, then to the backend on localhost;
//   - reference: to HAProxy A (one thread) on the client pod's loopback, over mTLS (TLS 1.3, both
//     certificates from the identity service, verified against the trust bundle) to HAProxy B (one
//     thread) in the server pod, then to the backend on localhost.
//
// For each path it measures latency percentiles at 200 and 2000 requests per second (fixed rate,
// a few keep-alive connections), the most requests per second a closed loop gets through, and for
// the proxied paths the proxies' CPU per 1000 requests per second and their resident memory. Each
// measurement is taken several times, the paths interleaved, and the medians reported. The last
// line is
//
//	RESULT rps_vs_reference=<x> p99_vs_reference=<x> p50_added_ms=<x> rss_mb=<x> cpu_m_per_krps=<x>
//
// The machine is shared and small: the numbers are for comparing the paths within one run, and
// nothing here asserts on them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/test/localmesh"
)

type options struct {
	reps              int
	fixedDur, maxDur  time.Duration
	warmup            time.Duration
	conns, maxConns   int
	lowRate, highRate float64
	keepControlPlane  bool
	pin               bool
	skeinEnv          string
	logsDir           string
	proxyBin          string
	profileDir        string
	verbose           bool
}

func main() {
	// The benchmark runs itself inside the client pod for these.
	subcommands := map[string]func([]string) error{"loadgen": loadgenMain, "probe": probeMain, "pprof": pprofMain}
	if len(os.Args) > 1 && subcommands[os.Args[1]] != nil {
		if err := subcommands[os.Args[1]](os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.reps, "reps", 3, "times each measurement is taken; medians are reported")
	flag.DurationVar(&o.fixedDur, "fixed-duration", 10*time.Second, "length of each fixed-rate run")
	flag.DurationVar(&o.maxDur, "max-duration", 8*time.Second, "length of each closed-loop (max RPS) run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "closed-loop warm-up of each path before the first measurement")
	flag.IntVar(&o.conns, "conns", 4, "connections of the fixed-rate runs")
	flag.IntVar(&o.maxConns, "max-conns", 16, "connections of the closed-loop runs")
	flag.Float64Var(&o.lowRate, "low-rate", 200, "the lower fixed rate, requests per second")
	flag.Float64Var(&o.highRate, "high-rate", 2000, "the higher fixed rate, at which CPU and memory are measured")
	flag.BoolVar(&o.keepControlPlane, "keep-control-plane", false, "keep the API server, cert-manager and control plane running while measuring (they are stopped once the proxies have their certificates, to keep their CPU out of the numbers)")
	flag.BoolVar(&o.pin, "pin", false, "pin the four proxies to CPU 1 and the load generator and backend to CPU 0 (default: no pinning, the kernel places everything)")
	flag.StringVar(&o.skeinEnv, "skein-env", "", "comma-separated NAME=value pairs for skein-proxy's environment, for experiments (e.g. GOGC=400)")
	flag.StringVar(&o.logsDir, "logs", "", "copy the proxies' and the backend's logs into this directory at the end")
	flag.StringVar(&o.proxyBin, "skein-proxy", "", "run this skein-proxy binary instead of building one from this tree (to compare a change)")
	flag.StringVar(&o.profileDir, "profile", "", "after the measurements, take CPU profiles of both skein-proxies under a closed loop into this directory (client.pprof, server.pprof); the proxies then run with --pprof")
	flag.BoolVar(&o.verbose, "v", false, "show the helpers' logs")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-proxy must run as root: it creates network namespaces, links and iptables rules (try: sudo make bench-proxy)")
		os.Exit(1)
	}
	if o.reps < 1 || o.conns < 1 || o.maxConns < 1 || o.lowRate <= 0 || o.highRate <= 0 {
		fmt.Fprintln(os.Stderr, "bench-proxy: -reps, -conns, -max-conns, -low-rate and -high-rate must be positive")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// run sets up, measures and reports, and cleans up however it ends.
func run(o options) (code int) {
	e := newEnv(o.verbose)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "bench-proxy: interrupted, cleaning up (interrupt again to clean up at once and exit)")
		cancel()
		<-sigs
		e.cleanup()
		os.Exit(130)
	}()
	defer e.cleanup()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failure)
			if !ok {
				panic(r)
			}
			fmt.Fprintf(os.Stderr, "bench-proxy: FAILED: %s\n", f.msg)
			code = 1
		}
	}()
	check := func() {
		if ctx.Err() != nil {
			e.Fatal("interrupted")
		}
	}

	var skeinEnv []string
	if o.skeinEnv != "" {
		skeinEnv = strings.Split(o.skeinEnv, ",")
	}
	m := setupMesh(e, skeinEnv, o.logsDir, o.proxyBin)
	m.pprof = o.profileDir != ""
	check()
	e.step("Starting the pods: nginx backend and skein-proxy in the server pod, skein-proxy in the client pod")
	m.server = m.addPod("server")
	m.client = m.addPod("client")
	m.startBackend(m.server)
	m.startSkein(m.server, nil)
	m.startSkein(m.client, []map[string]any{{
		"authority": fmt.Sprintf("server.%s.svc.cluster.local:%d", namespace, appPort),
		"endpoints": []map[string]any{{"addr": fmt.Sprintf("%s:%d", m.server.IP, appPort), "identity": m.server.id.String()}},
	}})
	check()
	e.step("Starting the reference: HAProxy in each pod, with certificates from the identity service")
	m.startReference()
	check()
	if !o.keepControlPlane {
		e.step("Stopping the control plane, cert-manager and the API server: the proxies have their certificates")
		m.stopControlPlane()
	}

	paths := []*path{
		{name: "direct", url: fmt.Sprintf("http://%s:%d/", m.server.IP, directPort)},
		{name: "skein", url: fmt.Sprintf("http://%s:%d/", m.server.IP, appPort), procs: []*proc{m.client.skein, m.server.skein}},
		{name: "reference", url: fmt.Sprintf("http://127.0.0.1:%d/", refLocal), procs: []*proc{m.client.haproxy, m.server.haproxy}},
	}
	for _, p := range paths {
		for _, pr := range p.procs {
			want := map[bool]string{true: "skein-proxy", false: "haproxy"}[p.name == "skein"]
			if c := comm(pr.pid()); c != want {
				e.Fatalf("pid %d of %s is %q, not %s: its CPU and memory would be misread", pr.pid(), pr.name, c, want)
			}
		}
	}
	if o.pin {
		if runtime.NumCPU() < 2 {
			e.Fatal("-pin needs at least 2 CPUs")
		}
		e.step("Pinning the proxies to CPU 1, the load generator and the backend to CPU 0")
		for _, p := range paths {
			for _, pr := range p.procs {
				m.pin(pr.pid(), "1")
			}
		}
		m.pin(m.backend.pid(), "0")
		m.pinLoad = "0"
	}
	if err := verifyPaths(ctx, m, paths); err != nil {
		e.Fatal(err)
	}
	check()

	fmt.Printf("\nEach path %d times, interleaved: %g RPS and %g RPS for %s on %d connections, then a closed loop for %s on %d connections.\n",
		o.reps, o.lowRate, o.highRate, o.fixedDur, o.conns, o.maxDur, o.maxConns)
	for _, p := range paths {
		if o.warmup > 0 {
			if _, err := m.load(ctx, p.url, 0, o.warmup, o.maxConns); err != nil {
				e.Fatalf("warming up %s: %v", p.name, err)
			}
		}
	}
	for rep := 1; rep <= o.reps; rep++ {
		for _, p := range paths {
			s, err := measure(ctx, m, p, o)
			check()
			if err != nil {
				e.Fatalf("measuring %s: %v", p.name, err)
			}
			p.samples = append(p.samples, s)
			fmt.Printf("  run %d/%d %-9s %s\n", rep, o.reps, p.name, s)
		}
	}
	for _, p := range paths {
		for _, pr := range p.procs {
			if pr.exited() {
				e.Fatalf("%s exited during the run (%v):\n%s", pr.name, pr.err, tail(pr.log, 20))
			}
		}
	}
	if o.profileDir != "" {
		if err := profile(ctx, m, paths[1].url, o); err != nil {
			e.Fatalf("profiling: %v", err)
		}
	}
	fmt.Println()
	fmt.Println(skeinCounts(m))
	report(paths, o)
	return 0
}

// verifyPaths makes one request on each path and checks that it went the way it should: the skein
// path through the server's skein-proxy with the client's verified identity, the reference path
// through HAProxy B with a verified client certificate over TLS 1.3, and the direct one through
// neither.
func verifyPaths(ctx context.Context, m *mesh, paths []*path) error {
	want := map[string]func(string) bool{
		"direct": func(id string) bool { return id == "" },
		"skein":  func(id string) bool { return id == m.client.id.String() },
		"reference": func(id string) bool {
			return id == "haproxy TLSv1.3 client-cert-used=1 verify=0"
		},
	}
	var errs []error
	for _, p := range paths {
		r, err := m.probe(ctx, p.url)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s path: %w", p.name, err))
			continue
		}
		if r.Status != 200 || r.Body != backendBody || !want[p.name](r.ClientID) {
			errs = append(errs, fmt.Errorf("%s path: the backend answered %d %q and was told the caller is %q", p.name, r.Status, r.Body, r.ClientID))
			continue
		}
		seen := r.ClientID
		if seen == "" {
			seen = "(nobody: no proxy on the way)"
		}
		fmt.Printf("  %-9s %-32s -> 200 from the backend, which was told the caller is %s\n", p.name, p.url, seen)
	}
	if len(errs) > 0 {
		var b strings.Builder
		for _, pr := range []*proc{m.client.skein, m.server.skein, m.client.haproxy, m.server.haproxy} {
			fmt.Fprintf(&b, "\n%s's log ends:\n%s", pr.name, tail(pr.log, 10))
		}
		return fmt.Errorf("%w%s", errors.Join(errs...), b.String())
	}
	return nil
}

// skeinCounts says what the server's skein-proxy counted: every request of the skein path should
// have come through it, over few mTLS connections.
func skeinCounts(m *mesh) string {
	metrics := localmesh.Get(fmt.Sprintf("http://%s:4191/metrics", m.server.IP))
	var lines []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "request_total{") || strings.HasPrefix(l, "tcp_open_total{") {
			lines = append(lines, "  "+l)
		}
	}
	return "The server's skein-proxy counted:\n" + strings.Join(lines, "\n")
}
