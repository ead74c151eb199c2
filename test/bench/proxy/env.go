package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/skeinmesh/skein/test/netns"
)

// env is the netns.T that test/netns's helpers take in place of a *testing.T: it keeps their
// cleanups and runs them, last first, once, whether the run ends normally, fails or is interrupted.
// Fatal and Fatalf panic with a failure that run recovers; they are only ever called from the main
// goroutine.
type env struct {
	verbose bool
	start   time.Time

	mu       sync.Mutex
	cleanups []func()
	once     sync.Once
}

// failure is what Fatal panics with.
type failure struct{ msg string }

func newEnv(verbose bool) *env { return &env{verbose: verbose, start: time.Now()} }

var _ netns.T = (*env)(nil)

func (e *env) Helper() {}

func (e *env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// Logf is the helpers' chatter, shown with -v.
func (e *env) Logf(format string, a ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, "  [%5.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, a...))
	}
}

// Errorf reports a problem that does not stop the run (the helpers use it for failed cleanups).
func (e *env) Errorf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench-proxy: warning: %s\n", fmt.Sprintf(format, a...))
}

func (e *env) Fatal(a ...any) { panic(failure{fmt.Sprint(a...)}) }

func (e *env) Fatalf(format string, a ...any) { panic(failure{fmt.Sprintf(format, a...)}) }

// step says what the run is doing, with the time since it started.
func (e *env) step(format string, a ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, a...))
}

// cleanup runs the cleanups, last registered first. A second caller waits for the first to finish.
func (e *env) cleanup() {
	e.once.Do(func() {
		e.mu.Lock()
		fns := e.cleanups
		e.cleanups = nil
		e.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			func() {
				defer func() {
					if r := recover(); r != nil {
						e.Errorf("a cleanup failed: %v", r)
					}
				}()
				fns[i]()
			}()
		}
	})
}
