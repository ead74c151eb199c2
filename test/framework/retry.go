package framework

import (
	"testing"
	"time"
)

// Retry repeats a call for up to 20 seconds until it succeeds, and returns what it printed: proxies
// learn of new Services within moments, not at once.
func Retry(t testing.TB, call func() (string, error)) string {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = call(); err == nil {
			return out
		}
	}
	t.Fatalf("%v: %s", err, out)
	return ""
}
