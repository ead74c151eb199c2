package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// await is `skein-proxy await`: it returns once the proxy in the same pod reports ready. The
// injector runs it as the classic sidecar's postStart hook, which the kubelet waits for before it
// starts the application's containers.
func await(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("skein-proxy await", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("admin-port", envInt("SKEIN_ADMIN_PORT", 4191), "The proxy's admin port")
	timeout := fs.Duration("timeout", 2*time.Minute, "How long to wait before giving up")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	url := "http://127.0.0.1:" + strconv.Itoa(*port) + "/ready"
	for {
		if ready(ctx, url) {
			return 0
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "skein-proxy await: %s did not report ready within %s\n", url, *timeout)
			return 1
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
