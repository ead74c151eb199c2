// Package prometheus runs the real Prometheus (Debian's package, /usr/bin/prometheus, installed by
// `make test-deps`) for tests: it scrapes the targets given, with a config of its own and its data in
// a temporary directory, on a free port of the loopback.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/promql"
)

// Binary is where Debian's package puts Prometheus.
const Binary = "/usr/bin/prometheus"

// Job is the scrape job of every target.
const Job = "skein-proxy"

// T is what the harness needs of a test.
type T interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
}

// Target is one /metrics endpoint, with the labels Prometheus adds to its series (namespace and pod,
// as Kubernetes service discovery would).
type Target struct {
	Addr   string
	Labels map[string]string
}

// Server is a running Prometheus.
type Server struct {
	// URL is its base URL, http://127.0.0.1:<port>.
	URL string
	// Client queries it.
	Client *promql.Client

	cmd    *exec.Cmd
	exited chan struct{}
}

// config is the part of Prometheus's configuration file that the harness writes.
type config struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		ScrapeTimeout      string `json:"scrape_timeout"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string         `json:"job_name"`
	MetricsPath   string         `json:"metrics_path"`
	StaticConfigs []staticConfig `json:"static_configs"`
}

type staticConfig struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Start runs Prometheus scraping targets every interval (a second or two keeps tests short), and
// waits until it is ready. It is stopped when the test ends.
func Start(t T, interval time.Duration, targets ...Target) (*Server, error) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("prometheus is not installed (make test-deps installs Debian's package): %w", err)
	}
	if interval < time.Second {
		return nil, fmt.Errorf("scrape interval %s: Prometheus wants at least 1s", interval)
	}
	dir, err := os.MkdirTemp("", "skein-prometheus-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := writeConfig(configPath, interval, targets); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Binary,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	out := &logWriter{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", Binary, err)
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.Stop() })
	if s.Client, err = promql.NewClient(s.URL); err != nil {
		return nil, err
	}
	return s, s.waitReady(30 * time.Second)
}

func writeConfig(path string, interval time.Duration, targets []Target) error {
	var c config
	c.Global.ScrapeInterval = promql.Duration(interval)
	c.Global.ScrapeTimeout = promql.Duration(interval)
	c.Global.EvaluationInterval = promql.Duration(interval)
	sc := scrapeConfig{JobName: Job, MetricsPath: "/metrics"}
	for _, target := range targets {
		sc.StaticConfigs = append(sc.StaticConfigs, staticConfig{Targets: []string{target.Addr}, Labels: target.Labels})
	}
	c.ScrapeConfigs = []scrapeConfig{sc}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// freeAddr finds a port of the loopback that nothing listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady waits for /-/ready, which answers 200 once the storage is open and the config loaded.
func (s *Server) waitReady(d time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("prometheus exited before it was ready (%s)", s.cmd.ProcessState)
		default:
		}
		if resp, err := c.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus at %s was not ready after %s", s.URL, d)
}

// WaitScraped waits until every target has been scraped successfully (its `up` series is 1).
func (s *Server) WaitScraped(ctx context.Context, targets int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last string
	for {
		samples, err := s.Client.Query(ctx, `up{job="`+Job+`"} == 1`, time.Time{})
		if err == nil && len(samples) == targets {
			return nil
		}
		last = fmt.Sprintf("%d of %d targets up (%v)", len(samples), targets, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for prometheus to scrape its targets: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops Prometheus as its service manager would, with SIGTERM, and waits for it to exit.
func (s *Server) Stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return errors.New("prometheus did not stop within 20s of SIGTERM; killed it")
	}
}

type logWriter struct{ t T }

func (w *logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Logf("prometheus: %s", line)
	}
	return len(b), nil
}
