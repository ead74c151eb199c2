// Command shaped is the workload of the Prometheus cross-check: a server whose latencies and 5xx
// share are known exactly, and a client that sends requests at a fixed rate.
//
//	shaped serve -addr :8081 -latency 14ms:70,70ms:27,240ms:3 -fail-every 20
//	shaped load -url http://10.0.0.2:80/ -host api.shop.svc.cluster.local:80 -rps 50 -conns 8 -duration 80s
//
// The server takes requests in arrival order and walks a fixed schedule rather than drawing at
// random, so that every 100 consecutive requests have exactly the shares given, and every
// fail-every-th request answers 503: the truth a window of the proxies' metrics is checked against.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: shaped serve|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want serve or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shaped:", err)
		os.Exit(1)
	}
}

// step is a latency and how many of every 100 requests get it.
type step struct {
	latency time.Duration
	percent int
}

// parseLatencies reads "14ms:70,70ms:27,240ms:3"; the percentages must add up to 100.
func parseLatencies(s string) ([]step, error) {
	var steps []step
	total := 0
	for _, part := range strings.Split(s, ",") {
		d, p, ok := strings.Cut(part, ":")
		latency, err := time.ParseDuration(d)
		if !ok || err != nil || latency < 0 {
			return nil, fmt.Errorf("-latency %q: want <duration>:<percent>,... such as 14ms:70,70ms:30", s)
		}
		percent, err := strconv.Atoi(p)
		if err != nil || percent <= 0 {
			return nil, fmt.Errorf("-latency %q: %q is not a whole percentage above 0", s, p)
		}
		steps = append(steps, step{latency, percent})
		total += percent
	}
	if total != 100 {
		return nil, fmt.Errorf("-latency %q: the percentages add up to %d, not 100", s, total)
	}
	return steps, nil
}

// latencyOf is the latency of the n-th request. Slots of 100 are visited in the order n*37 mod 100
// (37 and 100 have no common factor), which spreads each step's share evenly over the 100.
func latencyOf(steps []step, n uint64) time.Duration {
	slot := int(n * 37 % 100)
	for _, s := range steps {
		if slot < s.percent {
			return s.latency
		}
		slot -= s.percent
	}
	return steps[len(steps)-1].latency
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8081", "the HTTP address")
	latency := fs.String("latency", "0s:100", "latencies and their percentages of the requests")
	failEvery := fs.Uint64("fail-every", 0, "answer every n-th request with 503; 0 for none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	steps, err := parseLatencies(*latency)
	if err != nil {
		return err
	}
	var seen atomic.Uint64
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := seen.Add(1) - 1
		io.Copy(io.Discard, r.Body)
		time.Sleep(latencyOf(steps, n))
		if *failEvery > 0 && n%*failEvery == *failEvery-1 {
			http.Error(w, "shaped failure", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
}

// result is what load prints, as JSON.
type result struct {
	Sent    int64   `json:"sent"`
	OK      int64   `json:"ok"`
	Status5 int64   `json:"status5xx"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	// FirstError is the first request that got no response, if any.
	FirstError string `json:"firstError,omitempty"`
}

// load sends GET requests at rps in all, spread over conns keep-alive HTTP/1.1 connections, each
// sending on its own fixed schedule (and at once when behind it), for duration.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	url := fs.String("url", "", "the URL to GET")
	host := fs.String("host", "", "the Host header: the service's authority")
	rps := fs.Float64("rps", 50, "requests per second in all")
	conns := fs.Int("conns", 8, "connections")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *rps <= 0 || *conns <= 0 || *duration <= 0 {
		return errors.New("load wants -url, and -rps, -conns and -duration above 0")
	}
	var res result
	var mu sync.Mutex
	interval := time.Duration(float64(*conns) / *rps * float64(time.Second))
	start := time.Now()
	end := start.Add(*duration)
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
			// Connections start staggered over one interval, so that requests arrive evenly.
			next := start.Add(interval * time.Duration(i) / time.Duration(*conns))
			for next.Before(end) {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				req, _ := http.NewRequest(http.MethodGet, *url, nil)
				req.Host = *host
				resp, err := c.Do(req)
				mu.Lock()
				res.Sent++
				switch {
				case err != nil:
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				case resp.StatusCode >= 500:
					res.Status5++
				default:
					res.OK++
				}
				mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}
