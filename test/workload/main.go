// Command workload is the application of the proxy tests and the demo: a server that tells what it
// saw, and a client that calls it over HTTP/1.1, HTTP/2 with prior knowledge, gRPC's wire format and
// raw TCP, or sends it load.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	mode := flag.String("mode", "serve", "serve, or a client: http1, h2, grpc, tcp")
	addr := flag.String("addr", ":8080", "serve: the HTTP address; client: host:port to call")
	tcpAddr := flag.String("tcp-addr", ":9000", "serve: the TCP echo address")
	body := flag.String("body", "", "client: a marker to send")
	host := flag.String("host", "", "load: the Host header (the service's authority)")
	header := flag.String("header", "", `load: one more request header, "Name: value"`)
	duration := flag.Duration("duration", 10*time.Second, "load: how long to send requests")
	workers := flag.Int("workers", 4, "load: concurrent clients, each with a keep-alive connection")
	rate := flag.Float64("rate", 0, "load: send this many requests a second, each on time whatever the answers take, instead of -workers back to back")
	latencies := flag.String("latencies", "", `serve: answer HTTP after a delay drawn in a fixed order from "duration:weight,...", as "5ms:50,20ms:45,200ms:5"`)
	failEvery := flag.Int("fail-every", 0, "serve: answer every n-th HTTP request 500")
	requests := flag.Int("requests", 0, "load: stop after this many requests, before -duration if sooner")
	distinct := flag.Bool("distinct-hosts", false, `load: give each request a Host of its own, "r<n>.<-host>"`)
	flag.Parse()
	var err error
	switch *mode {
	case "serve":
		var b *behaviour
		if b, err = newBehaviour(*latencies, *failEvery); err == nil {
			err = serve(*addr, *tcpAddr, b)
		}
	case "http1", "h2", "grpc":
		err = callHTTP(*mode, *addr, *body)
	case "tcp":
		err = callTCP(*addr, *body)
	case "load":
		err = load(loadOptions{addr: *addr, host: *host, header: *header, duration: *duration, workers: *workers, rate: *rate, requests: *requests, distinctHosts: *distinct})
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}

// serve answers HTTP (1.1 and h2c) with "<proto> <path> <client identity> <body>", followed by
// " forwarded-for=<identity>" when a multicluster gateway forwarded the request and
// " accept-encoding=<value>" when the request had one, and echoes TCP lines.
func serve(httpAddr, tcpAddr string, b *behaviour) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.answer(w) {
			return
		}
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") == "application/grpc" {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			w.Write(b) // a gRPC message frame, echoed
			w.Header().Set("Grpc-Status", "0")
			return
		}
		w.Header().Set("Served-By", os.Getenv("POD_NAME"))
		fmt.Fprintf(w, "%s %s %s %s", r.Proto, r.URL.Path, r.Header.Get("Skein-Client-Id"), b)
		// Behind a multicluster gateway, the caller the gateway vouches for.
		if id := r.Header.Get("Skein-Forwarded-Client-Id"); id != "" {
			fmt.Fprintf(w, " forwarded-for=%s", id)
		}
		// The clients of -mode http1, h2 and grpc send none: one seen here was added on the way.
		if ae := r.Header.Get("Accept-Encoding"); ae != "" {
			fmt.Fprintf(w, " accept-encoding=%s", ae)
		}
	})
	l, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintln(c, "echo:", s.Text())
				}
			}()
		}
	}()
	return http.ListenAndServe(httpAddr, h2c.NewHandler(h, &http2.Server{}))
}

func callHTTP(mode, addr, body string) error {
	// Without compression, Go's clients send no Accept-Encoding of their own.
	var rt http.RoundTripper = &http.Transport{DisableCompression: true}
	if mode != "http1" {
		rt = &http2.Transport{AllowHTTP: true, DisableCompression: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		}}
	}
	req, err := http.NewRequest("POST", "http://"+addr+"/"+mode, strings.NewReader(body))
	if err != nil {
		return err
	}
	if mode == "grpc" {
		msg := append([]byte{0, 0, 0, 0, byte(len(body))}, body...) // one uncompressed gRPC message
		req, _ = http.NewRequest("POST", "http://"+addr+"/test.Echo/Echo", strings.NewReader(string(msg)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
	}
	c := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if mode == "grpc" {
		fmt.Printf("%d grpc-status=%s %q\n", resp.StatusCode, resp.Trailer.Get("Grpc-Status"), b[min(5, len(b)):])
		return nil
	}
	fmt.Printf("%d %s\n", resp.StatusCode, b)
	return nil
}

// loadOptions are the load mode's flags.
type loadOptions struct {
	addr, host, header string
	duration           time.Duration
	workers            int
	rate               float64
	requests           int
	distinctHosts      bool
}

// load sends GET requests for duration and prints "ok=<n> failed=<n>", which pods served them
// ("served-by <pod>=<n> ..." from the servers' $POD_NAME) and the first failures. With rate, the
// n-th request leaves at n/rate seconds whatever the earlier ones take (an open loop); otherwise
// each worker sends its next request once its last is answered.
func load(o loadOptions) error {
	addr, host, duration, workers, rate := o.addr, o.host, o.duration, o.workers, o.rate
	name, value, _ := strings.Cut(o.header, ":")
	var sent atomic.Int64
	var mu sync.Mutex
	ok, failed := 0, 0
	var failures []string
	servedBy := map[string]int{}
	// send sends one request, and says false when -requests were all sent.
	send := func(c *http.Client) bool {
		n := sent.Add(1)
		if o.requests > 0 && n > int64(o.requests) {
			return false
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/load", nil)
		req.Host = host
		if o.distinctHosts {
			req.Host = fmt.Sprintf("r%d.%s", n, host)
		}
		if name != "" {
			req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		resp, err := c.Do(req)
		by := ""
		if err == nil {
			by = resp.Header.Get("Served-By")
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if len(failures) < 5 {
				failures = append(failures, err.Error())
			}
			return true
		}
		ok++
		servedBy[by]++
		return true
	}
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	if rate > 0 {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
		start := time.Now()
		for n := 0; ; n++ {
			at := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
			if !at.Before(deadline) {
				break
			}
			time.Sleep(time.Until(at))
			wg.Go(func() { send(c) })
			if o.requests > 0 && n+1 >= o.requests {
				break
			}
		}
	} else {
		for range workers {
			wg.Go(func() {
				c := &http.Client{Timeout: 10 * time.Second}
				for time.Now().Before(deadline) && send(c) {
				}
			})
		}
	}
	wg.Wait()
	fmt.Printf("ok=%d failed=%d\n", ok, failed)
	pods := make([]string, 0, len(servedBy))
	for pod, n := range servedBy {
		pods = append(pods, fmt.Sprintf("%s=%d", pod, n))
	}
	sort.Strings(pods)
	fmt.Println("served-by", strings.Join(pods, " "))
	for _, f := range failures {
		fmt.Println("failure:", f)
	}
	return nil
}

func callTCP(addr, body string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, body)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print(line)
	return nil
}
