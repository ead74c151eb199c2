package telemetry

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Defaults of the MeshConfig's telemetry and proxy settings, for a mesh without a MeshConfig yet.
const (
	DefaultWindow         = time.Minute
	DefaultScrapeInterval = 10 * time.Second
	DefaultAdminPort      = 4191
)

// maxConcurrentScrapes bounds the scrapes under way at once, so that a large mesh does not open a
// connection to every proxy at the same moment.
const maxConcurrentScrapes = 64

// maxScrapeBytes bounds what is read of one proxy's /metrics: the proxy bounds its label values,
// so a larger answer is not a proxy of ours.
const maxScrapeBytes = 16 << 20

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Settings are what the telemetry component takes from the MeshConfig.
type Settings struct {
	Window, ScrapeInterval time.Duration
	AdminPort              int32
}

// SettingsFrom reads the settings of a MeshConfig, nil for none, with the defaults where unset.
func SettingsFrom(mc *meshv1.MeshConfig) Settings {
	s := Settings{Window: DefaultWindow, ScrapeInterval: DefaultScrapeInterval, AdminPort: DefaultAdminPort}
	if mc == nil {
		return s
	}
	if w := mc.Spec.Telemetry.Window; w != nil && w.Duration > 0 {
		s.Window = w.Duration
	}
	if i := mc.Spec.Telemetry.ScrapeInterval; i != nil && i.Duration > 0 {
		s.ScrapeInterval = i.Duration
	}
	if p := mc.Spec.Proxy.Ports.Admin; p > 0 {
		s.AdminPort = p
	}
	return s
}

// Component scrapes the meshed pods' proxies at the scrape interval and, after each round, hands
// the figures over the window to Publish. It runs in the leader only, as a manager Runnable.
type Component struct {
	Client client.Client
	Store  *Store
	// Publish receives each round's figures; the MeshStatus writer.
	Publish func(ctx context.Context, f *Figures, s Settings) error
	// HTTP scrapes the proxies; a client with a short timeout when nil.
	HTTP *http.Client
}

// Start scrapes until ctx ends.
func (c *Component) Start(ctx context.Context) error {
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	log := ctrl.LoggerFrom(ctx).WithName("telemetry")
	for {
		s, err := c.settings(ctx)
		if err != nil {
			log.Error(err, "Reading the telemetry settings")
		}
		if err := c.Round(ctx, s); err != nil {
			log.Error(err, "Computing the golden metrics")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.ScrapeInterval):
		}
	}
}

func (c *Component) settings(ctx context.Context) (Settings, error) {
	mc := &meshv1.MeshConfig{}
	err := c.Client.Get(ctx, types.NamespacedName{Name: meshv1.MeshConfigName}, mc)
	if apierrors.IsNotFound(err) {
		return SettingsFrom(nil), nil
	}
	if err != nil {
		return SettingsFrom(nil), fmt.Errorf("reading MeshConfig: %w", err)
	}
	return SettingsFrom(mc), nil
}

// Round scrapes every meshed pod once, then computes and publishes the figures.
func (c *Component) Round(ctx context.Context, s Settings) error {
	pods := &corev1.PodList{}
	if err := c.Client.List(ctx, pods); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	seen := map[string]bool{}
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxConcurrentScrapes)
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !meshv1.IsMeshed(pod) || pod.Status.PodIP == "" || pod.Status.Phase != corev1.PodRunning || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		seen[pod.Namespace+"/"+pod.Name] = true
		p := Proxy{Namespace: pod.Namespace, Pod: pod.Name, Workload: WorkloadName(ctx, c.Client, pod)}
		url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(s.AdminPort))) + "/metrics"
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			families, err := c.scrape(ctx, url)
			if err != nil {
				ctrl.LoggerFrom(ctx).V(1).Info("Scraping a proxy failed", "pod", p.key(), "err", err)
				c.Store.Down(p.Namespace, p.Pod)
				return
			}
			c.Store.Add(p, time.Now(), families)
		}()
	}
	wg.Wait()
	for _, key := range c.Store.keys() {
		if !seen[key] {
			ns, pod, _ := strings.Cut(key, "/")
			c.Store.Down(ns, pod)
		}
	}
	now := time.Now()
	c.Store.Prune(now.Add(-s.Window))
	if c.Publish == nil {
		return nil
	}
	return c.Publish(ctx, c.Store.Compute(now, s.Window), s)
}

func (c *Component) scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	families, err := Parse(io.LimitReader(resp.Body, maxScrapeBytes))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return families, nil
}

// WorkloadName names the pod's workload: its controller, a ReplicaSet's Deployment rather than
// the ReplicaSet, or the pod itself when nothing controls it.
func WorkloadName(ctx context.Context, c client.Reader, pod *corev1.Pod) string {
	return WorkloadOf(pod, func(name string) *metav1.OwnerReference {
		rs := &appsv1.ReplicaSet{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, rs); err != nil {
			return nil
		}
		return metav1.GetControllerOf(rs)
	})
}

// WorkloadOf names a pod's workload as "kind/name", lower-case kind; replicaSetOwner finds the
// controller of a ReplicaSet by name (nil for none or unknown).
func WorkloadOf(pod *corev1.Pod, replicaSetOwner func(name string) *metav1.OwnerReference) string {
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return "pod/" + pod.Name
	}
	if owner.Kind == "ReplicaSet" && strings.HasPrefix(owner.APIVersion, "apps/") {
		if d := replicaSetOwner(owner.Name); d != nil {
			owner = d
		}
	}
	return strings.ToLower(owner.Kind) + "/" + owner.Name
}
