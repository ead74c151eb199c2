package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
)

// path is one way from the client pod to the backend, and what was measured on it.
type path struct {
	name    string
	url     string
	procs   []*proc // its proxies: the client side's, then the server side's; none for direct
	samples []sample
}

// sample is one repetition of the measurements of a path.
type sample struct {
	low, high, max loadResult
	// highCPU is each proxy's CPU seconds during the high fixed-rate run; maxCores is what each
	// used during the closed loop, in cores (CPU seconds per second).
	highCPU, maxCores []float64
	// rss is each proxy's resident memory at the end of the high fixed-rate run, in MiB.
	rss []float64
	// During the closed loop: the cores the whole machine, the load generator and the backend used.
	machineCores, loadgenCores, backendCores float64
	proxied                                  bool
}

// cpuPerKRPS is the proxies' CPU at the high rate in millicores per 1000 requests per second, which
// is the same as their CPU microseconds per request.
func (s sample) cpuPerKRPS(i int) float64 {
	if !s.proxied || s.high.Requests == 0 {
		return math.NaN()
	}
	var cpu float64
	if i < 0 {
		for _, c := range s.highCPU {
			cpu += c
		}
	} else {
		cpu = s.highCPU[i]
	}
	return cpu * 1e6 / float64(s.high.Requests)
}

func (s sample) maxRSS() float64 {
	if !s.proxied {
		return math.NaN()
	}
	return slices.Max(s.rss)
}

func (s sample) String() string {
	b := fmt.Sprintf("%4.0f/s p50 %.3f p99 %.3f p99.9 %.3f ms | %4.0f/s p50 %.3f p99 %.3f p99.9 %.3f ms | max %6.0f/s",
		s.low.QPS, s.low.Millis["p50"], s.low.Millis["p99"], s.low.Millis["p99.9"],
		s.high.QPS, s.high.Millis["p50"], s.high.Millis["p99"], s.high.Millis["p99.9"], s.max.QPS)
	if s.proxied {
		b += fmt.Sprintf(" | CPU %.0f+%.0f m/krps, RSS %.1f MB, at max %.2f+%.2f cores",
			s.cpuPerKRPS(0), s.cpuPerKRPS(1), s.maxRSS(), s.maxCores[0], s.maxCores[1])
	}
	if errs := s.low.Errors + s.high.Errors + s.max.Errors; errs > 0 {
		b += fmt.Sprintf(" | %d FAILED requests", errs)
	}
	return b
}

// measure takes one sample of p: the low and high fixed rates, then the closed loop.
func measure(ctx context.Context, m *mesh, p *path, o options) (sample, error) {
	s := sample{proxied: len(p.procs) > 0}
	pids := make([]int, len(p.procs))
	for i, pr := range p.procs {
		pids[i] = pr.pid()
	}
	cpus := func() ([]float64, error) {
		out := make([]float64, len(pids))
		for i, pid := range pids {
			c, err := cpuSeconds(pid)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	var err error
	if s.low, err = m.load(ctx, p.url, o.lowRate, o.fixedDur, o.conns); err != nil {
		return s, err
	}

	before, err := cpus()
	if err != nil {
		return s, err
	}
	if s.high, err = m.load(ctx, p.url, o.highRate, o.fixedDur, o.conns); err != nil {
		return s, err
	}
	after, err := cpus()
	if err != nil {
		return s, err
	}
	for i := range pids {
		s.highCPU = append(s.highCPU, after[i]-before[i])
		rss, err := rssMB(pids[i])
		if err != nil {
			return s, err
		}
		s.rss = append(s.rss, rss)
	}

	backend := append([]int{m.backend.pid()}, children(m.backend.pid())...)
	backendBefore, err := totalCPU(backend)
	if err != nil {
		return s, err
	}
	busyBefore, totalBefore, err := machineCPU()
	if err != nil {
		return s, err
	}
	if before, err = cpus(); err != nil {
		return s, err
	}
	if s.max, err = m.load(ctx, p.url, 0, o.maxDur, o.maxConns); err != nil {
		return s, err
	}
	if after, err = cpus(); err != nil {
		return s, err
	}
	busyAfter, totalAfter, err := machineCPU()
	if err != nil {
		return s, err
	}
	backendAfter, err := totalCPU(backend)
	if err != nil {
		return s, err
	}
	// The load generator's own CPU includes its start and warm-up: a little more than the run.
	s.loadgenCores = s.max.CPU / s.max.Seconds
	s.backendCores = (backendAfter - backendBefore) / s.max.Seconds
	s.machineCores = (busyAfter - busyBefore) / (totalAfter - totalBefore) * float64(runtime.NumCPU())
	for i := range pids {
		s.maxCores = append(s.maxCores, (after[i]-before[i])/s.max.Seconds)
	}
	return s, nil
}

// median of f over p's samples.
func (p *path) median(f func(sample) float64) float64 {
	var v []float64
	for _, s := range p.samples {
		v = append(v, f(s))
	}
	slices.Sort(v)
	if len(v) == 0 {
		return math.NaN()
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// report prints the table of medians and the RESULT line.
func report(paths []*path, o options) {
	direct, skein, ref := paths[0], paths[1], paths[2]
	type row struct {
		label string
		f     func(sample) float64
		unit  string // format of the values
	}
	lat := func(rate func(sample) loadResult, q string) func(sample) float64 {
		return func(s sample) float64 { return rate(s).Millis[q] }
	}
	low := func(s sample) loadResult { return s.low }
	high := func(s sample) loadResult { return s.high }
	lo, hi := fmt.Sprintf("%g RPS", o.lowRate), fmt.Sprintf("%g RPS", o.highRate)
	rows := []row{
		{lo + " p50 (ms)", lat(low, "p50"), "%.3f"},
		{lo + " p99 (ms)", lat(low, "p99"), "%.3f"},
		{lo + " p99.9 (ms)", lat(low, "p99.9"), "%.3f"},
		{hi + " p50 (ms)", lat(high, "p50"), "%.3f"},
		{hi + " p99 (ms)", lat(high, "p99"), "%.3f"},
		{hi + " p99.9 (ms)", lat(high, "p99.9"), "%.3f"},
		{hi + " achieved (RPS)", func(s sample) float64 { return s.high.QPS }, "%.0f"},
		{fmt.Sprintf("max RPS (%d conns)", o.maxConns), func(s sample) float64 { return s.max.QPS }, "%.0f"},
		{"max RPS p50 (ms)", func(s sample) float64 { return s.max.Millis["p50"] }, "%.3f"},
		{"max RPS p99 (ms)", func(s sample) float64 { return s.max.Millis["p99"] }, "%.3f"},
		{"max RPS p99.9 (ms)", func(s sample) float64 { return s.max.Millis["p99.9"] }, "%.3f"},
		{"CPU m per 1000 RPS, both", func(s sample) float64 { return s.cpuPerKRPS(-1) }, "%.0f"},
		{"  client-side proxy", func(s sample) float64 { return s.cpuPerKRPS(0) }, "%.0f"},
		{"  server-side proxy", func(s sample) float64 { return s.cpuPerKRPS(1) }, "%.0f"},
		{"RSS MB (larger proxy)", func(s sample) float64 { return s.maxRSS() }, "%.1f"},
		{"cores at max: client side", func(s sample) float64 { return idx(s.maxCores, 0) }, "%.2f"},
		{"cores at max: server side", func(s sample) float64 { return idx(s.maxCores, 1) }, "%.2f"},
		{"cores at max: load generator", func(s sample) float64 { return s.loadgenCores }, "%.2f"},
		{"cores at max: backend", func(s sample) float64 { return s.backendCores }, "%.2f"},
		{fmt.Sprintf("cores at max: machine (of %d)", runtime.NumCPU()), func(s sample) float64 { return s.machineCores }, "%.2f"},
	}
	fmt.Printf("\nMedians of %d runs. reference = two HAProxy (nbthread 1) with mTLS; skein = two skein-proxy (GOMAXPROCS=1).\n", o.reps)
	fmt.Println("CPU per 1000 RPS is measured at the higher fixed rate and equals the proxies' CPU microseconds per request.")
	fmt.Printf("%-28s %10s %10s %10s %13s %13s %13s\n", "", "direct", "skein", "reference", "skein/direct", "skein/ref", "ref/direct")
	for _, r := range rows {
		d, s, f := direct.median(r.f), skein.median(r.f), ref.median(r.f)
		fmt.Printf("%-28s %10s %10s %10s %13s %13s %13s\n", r.label, num(r.unit, d), num(r.unit, s), num(r.unit, f),
			ratio(s, d), ratio(s, f), ratio(f, d))
	}
	var failed []string
	for _, p := range paths {
		var n, total int64
		for _, s := range p.samples {
			n += s.low.Errors + s.high.Errors + s.max.Errors
			total += s.low.Requests + s.high.Requests + s.max.Requests
		}
		failed = append(failed, fmt.Sprintf("%s %d of %d", p.name, n, total))
	}
	fmt.Printf("Failed requests: %s.\n", strings.Join(failed, ", "))

	p50 := lat(high, "p50")
	p99 := lat(high, "p99")
	fmt.Printf("Latency added at %s (p50): skein %+.3f ms, reference %+.3f ms.\n",
		hi, skein.median(p50)-direct.median(p50), ref.median(p50)-direct.median(p50))
	maxRPS := func(s sample) float64 { return s.max.QPS }
	fmt.Printf("RESULT rps_vs_reference=%.3f p99_vs_reference=%.3f p50_added_ms=%.3f rss_mb=%.1f cpu_m_per_krps=%.0f\n",
		skein.median(maxRPS)/ref.median(maxRPS),
		skein.median(p99)/ref.median(p99),
		skein.median(p50)-direct.median(p50),
		skein.median(func(s sample) float64 { return s.maxRSS() }),
		skein.median(func(s sample) float64 { return s.cpuPerKRPS(-1) }))
}

func idx(v []float64, i int) float64 {
	if i >= len(v) {
		return math.NaN()
	}
	return v[i]
}

func num(format string, v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
