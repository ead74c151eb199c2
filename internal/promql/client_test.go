package promql

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestNewClient(t *testing.T) {
	tests := []struct {
		url, wantErr string
	}{
		{"http://127.0.0.1:9090", ""},
		{"https://prometheus.example/prom/", ""},
		{"127.0.0.1:9090", "want http:// or https://"},
		{"ftp://prometheus", "want http:// or https://"},
		{"http://", "want http:// or https://"},
		{"http://a b", "invalid character"},
	}
	for _, tt := range tests {
		_, err := NewClient(tt.url)
		if tt.wantErr == "" {
			NewWithT(t).Expect(err).NotTo(HaveOccurred(), tt.url)
		} else {
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tt.wantErr)), tt.url)
		}
	}
}

// serve answers every request with a status and body, and records the last form it got.
func serve(t *testing.T, status int, body string) (*Client, *http.Request) {
	got := &http.Request{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		*got = *r
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	c, err := NewClient(s.URL + "/prom/")
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

func TestQuerySendsTheQuery(t *testing.T) {
	g := NewWithT(t)
	c, got := serve(t, 200, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	at := time.UnixMilli(1700000000250)
	samples, err := c.Query(context.Background(), `up{job="x"}`, at)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(samples).To(BeEmpty())
	g.Expect(got.Method).To(Equal(http.MethodPost))
	g.Expect(got.URL.Path).To(Equal("/prom/api/v1/query"))
	g.Expect(got.PostForm.Get("query")).To(Equal(`up{job="x"}`))
	g.Expect(got.PostForm.Get("time")).To(Equal("1700000000.250"))
}

func TestQueryAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    []Sample
		wantErr string
	}{
		{"a vector", 200, `{"status":"success","data":{"resultType":"vector","result":[
			{"metric":{"dst_service":"web.shop"},"value":[1700000000.5,"0.995"]},
			{"metric":{"dst_service":"api.shop"},"value":[1700000000.5,"+Inf"]}]}}`,
			[]Sample{{Labels: map[string]string{"dst_service": "web.shop"}, Value: 0.995},
				{Labels: map[string]string{"dst_service": "api.shop"}, Value: math.Inf(1)}}, ""},
		{"a bad query", 400, `{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}`,
			nil, "prometheus refused query q: bad_data: parse error: unexpected end of input"},
		{"an execution error", 422, `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`,
			nil, "execution: many-to-many matching not allowed"},
		{"not the API", 404, `404 page not found`, nil, "prometheus answered 404 to query q: 404 page not found"},
		{"an empty error page", 502, ``, nil, "prometheus answered 502 to query q: (empty body)"},
		{"200 but not JSON", 200, `<html>login</html>`, nil, "not its API's JSON: <html>login</html>"},
		{"a matrix", 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, nil, "query q gave a matrix, want a vector"},
		{"a value that is no number", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"many"]}]}}`,
			nil, `value "many" is not a number`},
		{"a value that is no pair", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}`,
			nil, "not a [time, value] pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c, _ := serve(t, tt.status, tt.body)
			samples, err := c.Query(context.Background(), "q", time.Time{})
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(samples).To(Equal(tt.want))
		})
	}
}

func TestQueryNaN(t *testing.T) {
	g := NewWithT(t)
	c, _ := serve(t, 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}`)
	samples, err := c.Query(context.Background(), "q", time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(samples).To(HaveLen(1))
	g.Expect(math.IsNaN(samples[0].Value)).To(BeTrue())
}

func TestQueryErrors(t *testing.T) {
	g := NewWithT(t)
	c, _ := serve(t, 400, `{"status":"error","errorType":"bad_data","error":"nope"}`)
	_, err := c.Query(context.Background(), "q", time.Time{})
	var apiErr *APIError
	g.Expect(errors.As(err, &apiErr)).To(BeTrue())
	g.Expect(apiErr.Type).To(Equal("bad_data"))

	s := httptest.NewServer(http.NotFoundHandler())
	s.Close() // nothing listens there now
	c, err = NewClient(s.URL)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Query(context.Background(), "q", time.Time{})
	g.Expect(err).To(MatchError(ContainSubstring("prometheus at " + s.URL + " is unreachable")))
}
