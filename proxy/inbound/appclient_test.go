package inbound

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawApp is an application that answers each request on a connection with the next of answers
// (raw HTTP/1 text), then keeps or closes the connection as each answer says. It counts connections
// and records the requests' heads.
type rawApp struct {
	addr  string
	conns atomic.Int32
	heads chan string
}

func startRawApp(t *testing.T, answer func(conn, req int) (text string, closeAfter bool)) *rawApp {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	a := &rawApp{addr: lis.Addr().String(), heads: make(chan string, 100)}
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			n := int(a.conns.Add(1))
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					var head strings.Builder
					fmt.Fprintf(&head, "%s %s host=%s", req.Method, req.URL.RequestURI(), req.Host)
					for _, k := range []string{"Accept-Encoding", "X-Test", "User-Agent"} {
						if v, ok := req.Header[k]; ok {
							fmt.Fprintf(&head, " %s=%s", k, strings.Join(v, ","))
						}
					}
					a.heads <- head.String()
					text, closeAfter := answer(n, i)
					if _, err := io.WriteString(conn, text); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return a
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func get(t *testing.T, c *appClient, ctx context.Context, method, addr string) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/path?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.shop.svc.cluster.local"
	req.Header.Set("X-Test", "yes")
	req.Header["User-Agent"] = nil // as ReverseProxy leaves a request that had none
	if !c.takes(req) {
		t.Fatalf("%s without a body not taken", method)
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b), err
}

func TestAppClientKeepsConnectionsAlive(t *testing.T) {
	app := startRawApp(t, func(conn, req int) (string, bool) { return ok(fmt.Sprintf("conn %d req %d", conn, req)), false })
	c := &appClient{maxIdle: 10}
	defer c.CloseIdle()
	for i := range 5 {
		got, err := get(t, c, context.Background(), http.MethodGet, app.addr)
		if want := fmt.Sprintf("200 conn 1 req %d", i); err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	// The request reaches the application as the client sent it: nothing added, nothing lost.
	if head := <-app.heads; head != "GET /path?q=1 host=web.shop.svc.cluster.local X-Test=yes" {
		t.Errorf("the application saw %q", head)
	}
	if n := app.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 requests", n)
	}
}

func TestAppClientRetriesOnAConnectionTheApplicationClosed(t *testing.T) {
	// The application closes each connection after its first answer without saying so, as one
	// whose keep-alive timeout passed does: the next request finds the connection gone.
	app := startRawApp(t, func(conn, req int) (string, bool) { return ok(fmt.Sprintf("conn %d", conn)), true })
	c := &appClient{maxIdle: 10}
	defer c.CloseIdle()
	for i := range 3 {
		got, err := get(t, c, context.Background(), http.MethodGet, app.addr)
		if want := fmt.Sprintf("200 conn %d", i+1); err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
		time.Sleep(20 * time.Millisecond) // the close arrives
	}
}

func TestAppClientReusesOnlyCleanConnections(t *testing.T) {
	answers := map[int]string{
		0: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst",
		1: "HTTP/1.1 204 No Content\r\n\r\n",
		2: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok("after hints"),
		3: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n",
	}
	app := startRawApp(t, func(conn, req int) (string, bool) {
		if conn == 1 {
			// It said Connection: close but keeps the connection open: any more on it is wrong.
			return map[bool]string{true: answers[0], false: ok("wrong")}[req == 0], false
		}
		return answers[req+1], false
	})
	c := &appClient{maxIdle: 10}
	defer c.CloseIdle()
	for i, want := range []string{"200 first", "204 ", "200 after hints", "200 chunk"} {
		got, err := get(t, c, context.Background(), http.MethodGet, app.addr)
		if err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	// Connection: close made the second connection; 204, the hints and the chunks left it clean.
	if n := app.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestAppClientDropsAConnectionLeftMidBody(t *testing.T) {
	app := startRawApp(t, func(conn, req int) (string, bool) { return ok(strings.Repeat("x", 1<<20)), false })
	c := &appClient{maxIdle: 10}
	defer c.CloseIdle()
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := app.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a connection with a body left unread was used again", n)
	}
}

func TestAppClientCancels(t *testing.T) {
	// The application never answers.
	app := startRawApp(t, func(conn, req int) (string, bool) { select {} })
	c := &appClient{maxIdle: 10}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := get(t, c, ctx, http.MethodGet, app.addr)
	if err != context.DeadlineExceeded {
		t.Errorf("got %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to give up", d)
	}
}

func TestAppClientTakes(t *testing.T) {
	c := &appClient{}
	for _, tt := range []struct {
		method, body, upgrade string
		want                  bool
	}{
		{"GET", "", "", true},
		{"HEAD", "", "", true},
		{"OPTIONS", "", "", true},
		{"GET", "", "websocket", false},
		{"GET", "a body", "", false},
		{"POST", "", "", false},
		{"DELETE", "", "", false},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		req, _ := http.NewRequest(tt.method, "http://127.0.0.1:1/", body)
		if tt.upgrade != "" {
			req.Header.Set("Upgrade", tt.upgrade)
		}
		if got := c.takes(req); got != tt.want {
			t.Errorf("%s with body %q, upgrade %q: takes=%v", tt.method, tt.body, tt.upgrade, got)
		}
	}
}

func TestAppClientClosesConnectionsIdleTooLong(t *testing.T) {
	app := startRawApp(t, func(conn, req int) (string, bool) { return ok(fmt.Sprintf("conn %d", conn)), false })
	now := time.Unix(1000, 0)
	c := &appClient{maxIdle: 10, idleTimeout: 90 * time.Second, now: func() time.Time { return now }}
	defer c.CloseIdle()
	// Two requests at once make two connections, both idle from now on.
	var bodies []io.ReadCloser
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		io.ReadAll(b)
		b.Close()
	}
	if n := len(c.idle[app.addr]); n != 2 {
		t.Fatalf("%d idle connections, want 2", n)
	}
	// 100 s later one request uses the newer connection; the older one, idle for longer than 90 s,
	// is closed when the newer comes back.
	now = now.Add(100 * time.Second)
	if got, err := get(t, c, context.Background(), http.MethodGet, app.addr); err != nil || got != "200 conn 2" {
		t.Fatalf("got %q, %v; want the newer connection", got, err)
	}
	if conns := c.idle[app.addr]; len(conns) != 1 || conns[0].idleSince != now {
		t.Fatalf("idle connections after the prune: %d", len(conns))
	}
}
