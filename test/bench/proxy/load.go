package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	flog "fortio.org/log"

	"github.com/skeinmesh/skein/proxy/iptables"
)

// The benchmark runs its own binary inside the client pod's network namespace for the load
// (`loadgen`) and for one-off checks (`probe`): fortio, as a library, then opens its connections
// from inside the pod, behind the pod's iptables rules.

// loadResult is what loadgen prints, as JSON.
type loadResult struct {
	Requests int64              `json:"requests"`
	Errors   int64              `json:"errors"` // failed requests: socket errors or a status other than 200
	Codes    map[int]int64      `json:"codes"`
	QPS      float64            `json:"qps"`
	Seconds  float64            `json:"seconds"`
	Millis   map[string]float64 `json:"ms"` // latency percentiles: "p50", "p99", "p99.9", "max"

	// CPU is the CPU seconds the load generator itself used, filled in by the caller.
	CPU float64 `json:"-"`
}

// loadgenMain is `<self> loadgen -url U -qps Q -duration D -conns C`: one fortio run over C
// keep-alive HTTP/1.1 connections, at Q requests per second spread evenly over them (uniformly
// staggered), or as fast as they go when Q is 0. Latencies are kept one by one, so the percentiles
// are exact rather than fortio's histogram interpolation.
func loadgenMain(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET")
	qps := fs.Float64("qps", 0, "requests per second in all; 0 for as many as the connections carry")
	dur := fs.Duration("duration", 10*time.Second, "how long")
	conns := fs.Int("conns", 4, "connections, one request in flight on each")
	if err := fs.Parse(args); err != nil {
		return err
	}
	flog.SetLogLevelQuiet(flog.Error)
	rec := &recorder{lat: make([][]float64, *conns), failed: make([]int64, *conns)}
	perConn := 1000
	if *qps > 0 {
		perConn = int(*qps * dur.Seconds() / float64(*conns) * 1.1)
	}
	for i := range rec.lat {
		rec.lat[i] = make([]float64, 0, perConn)
	}
	o := &fhttp.HTTPRunnerOptions{}
	o.URL = *url
	o.QPS = *qps
	if *qps <= 0 {
		o.QPS = -1 // fortio's max speed: no wait between requests
	}
	o.Duration = *dur
	o.NumThreads = *conns
	o.Uniform = *qps > 0
	o.Out = io.Discard
	o.AccessLogger = rec
	o.HTTPReqTimeOut = 5 * time.Second
	o.Percentiles = []float64{50, 99, 99.9}
	o.AllowInitialErrors = false
	res, err := fhttp.RunHTTPTest(o)
	if err != nil {
		return err
	}
	var all []float64
	var failed int64
	for i := range rec.lat {
		all = append(all, rec.lat[i]...)
		failed += rec.failed[i]
	}
	slices.Sort(all)
	out := loadResult{
		Requests: int64(len(all)), Codes: res.RetCodes, QPS: res.ActualQPS, Seconds: res.ActualDuration.Seconds(),
		Millis: map[string]float64{"p50": pct(all, 50), "p99": pct(all, 99), "p99.9": pct(all, 99.9)},
	}
	if len(all) > 0 {
		out.Millis["max"] = all[len(all)-1] * 1000
	}
	out.Errors = failed
	if ok := res.RetCodes[http.StatusOK]; ok < out.Requests && out.Requests-ok > failed {
		out.Errors = out.Requests - ok
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// pct is the nearest-rank percentile q of sorted latencies in seconds, in milliseconds.
func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))] * 1000
}

// recorder is a fortio access logger that keeps every request's latency, one slice per connection.
type recorder struct {
	lat    [][]float64
	failed []int64
}

func (r *recorder) Start(ctx context.Context, _ periodic.ThreadID, _ int64, _ time.Time) context.Context {
	return ctx
}

func (r *recorder) Report(_ context.Context, t periodic.ThreadID, _ int64, _ time.Time, latency float64, ok bool, _ string) {
	r.lat[t] = append(r.lat[t], latency)
	if !ok {
		r.failed[t]++
	}
}

func (r *recorder) Info() string { return "latency recorder" }

// probeResult is what probe prints.
type probeResult struct {
	Status   int    `json:"status"`
	ClientID string `json:"clientID"` // the backend's X-Client-Id: who it was told called
	Body     string `json:"body"`
}

// probeMain is `<self> probe URL`: one GET, on a fresh connection.
func probeMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: probe URL")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(probeResult{Status: resp.StatusCode, ClientID: resp.Header.Get("X-Client-Id"), Body: string(b)})
}

// runIn runs this binary with args in pod p (on the load generator's CPU when pinning), decodes
// the JSON it prints into v, and returns the CPU seconds it used.
func (m *mesh) runIn(ctx context.Context, p *pod, timeout time.Duration, v any, args ...string) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	var cmd *exec.Cmd
	if m.pinLoad != "" {
		cmd = p.Command(ctx, m.tasksetBin, append([]string{"-c", m.pinLoad, self}, args...)...)
	} else {
		cmd = p.Command(ctx, self, args...)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s in pod %s: %w: %s", args[0], p.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		return 0, fmt.Errorf("%s in pod %s printed %q: %w", args[0], p.Name, stdout.String(), err)
	}
	ps := cmd.ProcessState
	return (ps.UserTime() + ps.SystemTime()).Seconds(), nil
}

// load runs one fortio load from the client pod.
func (m *mesh) load(ctx context.Context, url string, qps float64, d time.Duration, conns int) (loadResult, error) {
	var r loadResult
	cpu, err := m.runIn(ctx, m.client, d+time.Minute, &r, "loadgen", "-url", url,
		"-qps", strconv.FormatFloat(qps, 'f', -1, 64), "-duration", d.String(), "-conns", strconv.Itoa(conns))
	r.CPU = cpu
	return r, err
}

// probe makes one request from the client pod.
func (m *mesh) probe(ctx context.Context, url string) (probeResult, error) {
	var r probeResult
	_, err := m.runIn(ctx, m.client, 30*time.Second, &r, "probe", url)
	return r, err
}

// pprofMain is `<self> pprof URL FILE`: it saves what URL answers (a profile, which the proxy serves
// to localhost only) to FILE.
func pprofMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: pprof URL FILE")
	}
	resp, err := http.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.WriteFile(args[1], b, 0o644); err != nil {
		return err
	}
	fmt.Println("{}")
	return nil
}

// profile takes a CPU profile of each skein-proxy while a closed loop runs through them.
func profile(ctx context.Context, m *mesh, url string, o options) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	secs := max(1, int(o.maxDur.Seconds())-2)
	m.e.step("Profiling both skein-proxies for %ds of a closed loop on %d connections, into %s", secs, o.maxConns, o.profileDir)
	errs := make(chan error, 3)
	go func() {
		_, err := m.load(ctx, url, 0, o.maxDur, o.maxConns)
		errs <- err
	}()
	time.Sleep(time.Second)
	for _, p := range []*pod{m.client, m.server} {
		go func() {
			var r struct{}
			profileURL := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", iptables.AdminPort, secs)
			_, err := m.runIn(ctx, p, o.maxDur+time.Minute, &r, "pprof", profileURL, filepath.Join(o.profileDir, p.Name+".pprof"))
			errs <- err
		}()
	}
	var all []error
	for range 3 {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
