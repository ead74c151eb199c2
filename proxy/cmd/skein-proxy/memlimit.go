package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultMemoryLimit is the Go runtime's soft memory limit when neither --memory-limit nor
// GOMEMLIMIT says otherwise. A proxy's live heap is small, a few MB, but after a burst of
// connections the runtime would keep the freed heap resident for minutes; near the limit it
// collects sooner and hands freed memory back to the kernel. It is soft: a proxy whose live heap
// needs more still gets it, at the cost of collecting more often (the runtime caps that at about
// half its CPU), which is why it leaves room above a small proxy's few MB.
const defaultMemoryLimit = 16 << 20

// memoryLimit reads --memory-limit: bytes, with an optional Ki, Mi or Gi suffix as Kubernetes
// writes quantities; 0 or "off" leaves the runtime unlimited. "" means the default, unless
// GOMEMLIMIT is set, which then stands. ok is false when the runtime's own setting stands.
func memoryLimit(v string, gomemlimit bool) (limit int64, ok bool, err error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" && gomemlimit:
		return 0, false, nil
	case v == "":
		return defaultMemoryLimit, true, nil
	case v == "off":
		return 0, true, nil
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, found := strings.CutSuffix(v, suffix); found {
			v, mult = n, m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, false, fmt.Errorf("--memory-limit: %q is not a number of bytes (e.g. 20Mi, 20971520, or off)", v)
	}
	return n * mult, true, nil
}

// applyMemoryLimit sets the runtime's soft memory limit; 0 is no limit.
func applyMemoryLimit(limit int64) {
	if limit == 0 {
		limit = 1<<63 - 1 // the runtime's "no limit"
	}
	debug.SetMemoryLimit(limit)
}
