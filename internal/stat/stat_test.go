package stat

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestPrintTable(t *testing.T) {
	rows := []Row{
		{Namespace: "shop", Name: "web", Meshed: "2/2", SuccessRate: ptr(99.5), RPS: ptr(50.0), LatencyP50: ptr(4.25), LatencyP95: ptr(18.0), LatencyP99: ptr(195.4), TCPConnections: ptr(int64(3))},
		{Namespace: "shop", Name: "idle", Meshed: "1/1"},
	}
	var b bytes.Buffer
	if err := Print(&b, rows, Table); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE  NAME  MESHED  SUCCESS  RPS      LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN
shop       web   2/2     99.50%   50.0rps  4.2ms        18ms         195ms        3
shop       idle  1/1     -        -        -            -            -            -
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintTrafficSplit(t *testing.T) {
	rows := []Row{{Namespace: "shop", Name: "web", Apex: "web", Backend: "web-v2", Weight: ptr(int32(10)), Observed: ptr(9.8), SuccessRate: ptr(100.0)}}
	var b bytes.Buffer
	if err := Print(&b, rows, Wide); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got[len(got)-5:], " ") != "MTLS APEX BACKEND WEIGHT OBSERVED" {
		t.Errorf("header %q", lines[0])
	}
	if got := strings.Fields(lines[1]); strings.Join(got[len(got)-4:], " ") != "web web-v2 10 9.80%" {
		t.Errorf("row %q", lines[1])
	}
}

func TestPrintJSON(t *testing.T) {
	var b bytes.Buffer
	if err := Print(&b, []Row{{Name: "shop", RPS: ptr(2.5)}}, JSON); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["name"] != "shop" || got[0]["rps"] != 2.5 || got[0]["successRate"] != nil {
		t.Errorf("json %s", b.String())
	}
	b.Reset()
	if err := Print(&b, nil, JSON); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("no rows: %q %v", b.String(), err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := ParseKind("pods"); err == nil || !strings.Contains(err.Error(), `"pods"`) {
		t.Errorf("ParseKind(pods) = %v", err)
	}
	if k, err := ParseKind("TS"); err != nil || k != TrafficSplits {
		t.Errorf("ParseKind(TS) = %v, %v", k, err)
	}
	if err := Print(&bytes.Buffer{}, nil, "yaml"); err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Errorf("Print yaml = %v", err)
	}
}
