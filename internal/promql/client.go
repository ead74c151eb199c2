package promql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client asks one Prometheus server for instant vectors.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient checks that address is a Prometheus base URL (http or https, with a host; a path
// prefix such as /prometheus is kept).
func NewClient(address string) (*Client, error) {
	const want = "want http:// or https:// and a host, such as http://prometheus.monitoring:9090"
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %s: %w", address, want, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus URL %q: %s", address, want)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Sample is one series of an instant vector: its labels and value (NaN where PromQL divided 0 by 0).
type Sample struct {
	Labels map[string]string
	Value  float64
}

// APIError is Prometheus refusing a query, with its errorType (bad_data, execution, timeout, ...).
type APIError struct {
	Query, Type, Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("prometheus refused query %s: %s: %s", e.Query, e.Type, e.Message)
}

// Query evaluates an instant query at the given time (now when zero).
func (c *Client) Query(ctx context.Context, query string, at time.Time) ([]Sample, error) {
	form := url.Values{"query": {query}}
	if !at.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	endpoint := c.base.JoinPath("api/v1/query").String()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus at %s is unreachable: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading prometheus's answer from %s: %w", endpoint, err)
	}
	return parseAnswer(query, resp.StatusCode, body)
}

// answer is the API's envelope for an instant query.
type answer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []json.RawMessage `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// parseAnswer reads the API's JSON, which it sends with its errors too (400, 422, 503); anything
// else with a bad status is not Prometheus's API (a wrong URL, a proxy in the way).
func parseAnswer(query string, status int, body []byte) ([]Sample, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil || a.Status == "" {
		if status/100 != 2 {
			return nil, fmt.Errorf("prometheus answered %d to query %s: %s", status, query, snippet(body))
		}
		return nil, fmt.Errorf("prometheus's answer to query %s is not its API's JSON: %s", query, snippet(body))
	}
	if a.Status != "success" {
		return nil, &APIError{Query: query, Type: a.ErrorType, Message: a.Error}
	}
	if a.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s gave a %s, want a vector", query, a.Data.ResultType)
	}
	samples := make([]Sample, 0, len(a.Data.Result))
	for _, r := range a.Data.Result {
		v, err := sampleValue(r.Value)
		if err != nil {
			return nil, fmt.Errorf("query %s: series %v: %w", query, r.Metric, err)
		}
		samples = append(samples, Sample{Labels: r.Metric, Value: v})
	}
	return samples, nil
}

// sampleValue reads [<unix time>, "<value>"]; the value is a string so that NaN and ±Inf survive JSON.
func sampleValue(pair []json.RawMessage) (float64, error) {
	if len(pair) != 2 {
		return 0, errors.New("value is not a [time, value] pair")
	}
	var s string
	if err := json.Unmarshal(pair[1], &s); err != nil {
		return 0, fmt.Errorf("value %s is not a string", pair[1])
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	return v, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
