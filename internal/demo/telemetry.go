package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/stat"
	"github.com/skeinmesh/skein/internal/telemetry"
)

// shortTelemetryWindows makes the control plane scrape often and keep short windows, so that the
// demo need not wait a minute for its figures; ahead of the traffic, so that it is in force by then.
func (d *demo) shortTelemetryWindows(ctx context.Context) error {
	const patch = `{"spec":{"telemetry":{"window":"10s","scrapeInterval":"2s"}}}`
	d.say("Short telemetry windows, so that the demo need not wait a minute: kubectl patch meshconfig default --type=merge -p '" + patch + "'")
	return d.kubectl(ctx, "patch", "meshconfig", "default", "--type=merge", "-p", patch)
}

// telemetry sends load through the meshed pods and shows the golden metrics the control plane
// computed from their proxies: kubectl get meshstatus, and skein stat over the same MeshStatuses.
func (d *demo) telemetry(ctx context.Context) error {
	if d.caller == nil {
		return nil
	}
	d.say("Twenty seconds of requests to web, 20 a second; the control plane scrapes every proxy's /metrics meanwhile")
	type result struct {
		out string
		err error
	}
	loaded := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := d.caller.Run(0, "-mode", "load", "-addr", d.webIP+":80", "-host", "web.default.svc.cluster.local:80", "-rate", "20", "-duration", "20s")
		loaded <- result{out, err}
	}()
	if err := d.waitForFigures(ctx, telemetry.NamespaceStatusName("default")); err != nil {
		return err
	}
	// A full window of load and a scrape round, so that the figures are the load's steady ones.
	time.Sleep(time.Until(start.Add(13 * time.Second)))
	if err := d.show("meshstatus")(ctx); err != nil {
		return err
	}
	src := stat.MeshStatuses{Client: d.cluster.Client}
	for _, q := range []struct {
		kind      stat.Kind
		namespace string
		args      string
	}{{stat.Services, "default", "services -n default"}, {stat.Workloads, "default", "workloads -n default"}, {stat.Namespaces, "", "namespaces"}} {
		d.say("skein stat " + q.args)
		rows, err := src.Rows(ctx, q.kind, q.namespace)
		if err != nil {
			return err
		}
		var b strings.Builder
		if err := stat.Print(&b, rows, stat.Table); err != nil {
			return err
		}
		d.printf("%s", indent(b.String()))
	}
	r := <-loaded
	if r.err != nil {
		return fmt.Errorf("load from client to web: %v: %s", r.err, r.out)
	}
	d.say("The load, as its client counted it")
	d.printf("%s", indent(r.out))
	return nil
}

// waitForFigures waits for a MeshStatus to show requests per second.
func (d *demo) waitForFigures(ctx context.Context, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms := &meshv1.MeshStatus{}
		if err := d.cluster.Client.Get(ctx, client.ObjectKey{Name: name}, ms); err == nil && ms.Status.RPS != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MeshStatus %s showed no figures within 30s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
