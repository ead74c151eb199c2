// Package check is what `skein check` runs: a list of named checks of a cluster, before Skein is
// installed (Pre) or after (Installed), each giving one result with a hint when it is not well.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/scheme"
)

// Status is how a check went.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warning"
	Fail Status = "error"
)

// Result is one check's outcome.
type Result struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Status   Status `json:"result"`
	// Message says what was found when it is not OK, or a detail worth seeing when it is.
	Message string `json:"message,omitempty"`
	// Hint says what to do about a warning or an error.
	Hint string `json:"hint,omitempty"`
}

// Env is what the checks look at.
type Env struct {
	Client    client.Client
	Clientset kubernetes.Interface
	// Namespace is the control plane's.
	Namespace string
	// IdentityAddr and XDSAddr, when set, are where the control plane's services are dialled
	// (host:port); otherwise their Services must have ready endpoints.
	IdentityAddr, XDSAddr string
	// Now is the time certificates are judged at.
	Now time.Time
}

// NewEnv connects to the cluster of cfg.
func NewEnv(cfg *rest.Config, namespace string) (*Env, error) {
	s := scheme.New()
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Env{Client: c, Clientset: cs, Namespace: namespace, Now: time.Now()}, nil
}

// Check is one named check; run returns its results (most return one).
type Check struct {
	category, name string
	run            func(context.Context, *Env) []Result
}

// Run runs the checks in order. When a check of the API server itself fails, the rest are not
// run: each would only fail the same way.
func Run(ctx context.Context, env *Env, checks []Check) []Result {
	var results []Result
	for _, c := range checks {
		rs := c.run(ctx, env)
		for i := range rs {
			rs[i].Category = c.category
			if rs[i].Name == "" {
				rs[i].Name = c.name
			}
		}
		results = append(results, rs...)
		if c.category == categoryAPI && Failed(rs) {
			break
		}
	}
	return results
}

// Failed tells whether any result is an error.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

var marks = map[Status]string{OK: "✔", Warn: "‼", Fail: "×"}

// Print writes the results for a person: a heading per category, one line per check, and the
// hint under each warning or error.
func Print(w io.Writer, results []Result) error {
	category := ""
	for _, r := range results {
		if r.Category != category {
			if category != "" {
				fmt.Fprintln(w)
			}
			category = r.Category
			fmt.Fprintf(w, "%s\n%s\n", category, dashes(len(category)))
		}
		line := marks[r.Status] + " " + r.Name
		if r.Message != "" {
			line += ": " + r.Message
		}
		fmt.Fprintln(w, line)
		if r.Hint != "" && r.Status != OK {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
	}
	verdict := "Status check results are ✔"
	if Failed(results) {
		verdict = "Status check results are ×"
	}
	_, err := fmt.Fprintf(w, "\n%s\n", verdict)
	return err
}

// PrintJSON writes the results as one JSON object: {"success": bool, "checks": [...]}.
func PrintJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Success bool     `json:"success"`
		Checks  []Result `json:"checks"`
	}{!Failed(results), results})
}

func dashes(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '-'
	}
	return string(b)
}

func ok(message string) []Result { return []Result{{Status: OK, Message: message}} }

func warn(message, hint string) []Result {
	return []Result{{Status: Warn, Message: message, Hint: hint}}
}

func fail(message, hint string) []Result {
	return []Result{{Status: Fail, Message: message, Hint: hint}}
}
