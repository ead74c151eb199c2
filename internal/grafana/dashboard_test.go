package grafana

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/promql"
)

func TestFileIsFresh(t *testing.T) {
	want, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", Path))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `make generate`", Path)
	}
}

// TestPanelsUseTheDefinitions finds each figure's PromQL, as internal/promql writes it, in the panels.
func TestPanelsUseTheDefinitions(t *testing.T) {
	b, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		SchemaVersion int
		Panels        []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion %d", d.SchemaVersion)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			exprs = append(exprs, t.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		servicesOfNamespace.SuccessRate(varWindow), servicesOfNamespace.RPS(varWindow),
		servicesOfNamespace.Quantile(0.5, varWindow), servicesOfNamespace.Quantile(0.95, varWindow), servicesOfNamespace.Quantile(0.99, varWindow),
		servicesOfNamespace.TCPConnections(), routesOfService.SuccessRate(varWindow), routesOfService.Quantile(0.99, varWindow),
		namespace.MTLSCoverage(varWindow),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	// The selections are internal/promql's, with variables for the values.
	vars := strings.NewReplacer("$namespace", "shop", "$service", "web.shop")
	for _, tt := range []struct{ dashboard, promql promql.Target }{
		{servicesOfNamespace, promql.Service("shop", "")},
		{routesOfService, promql.Route("shop", "web")},
		{backendsOfService, promql.Backends("shop", "web")},
		{namespace, promql.Namespace("shop")},
	} {
		if got, want := vars.Replace(tt.dashboard.SuccessRate("1m")), tt.promql.SuccessRate("1m"); got != want {
			t.Errorf("the dashboard's %s\nis not internal/promql's %s", got, want)
		}
	}
}
