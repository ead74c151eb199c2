// Package iptables builds and applies the nat rules that send a pod's TCP traffic through
// skein-proxy: inbound connections to the proxy's inbound port, outbound ones to its outbound port.
// The skein-proxy init container applies them in the pod's network namespace (a VM operator can do
// the same by hand); the proxy then reads each connection's original destination with SO_ORIGINAL_DST.
package iptables

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Skein's own chains in the nat table. PREROUTING jumps to InboundChain and OUTPUT to
// OutboundChain; everything else Skein adds lives in these two, so it can be replaced or removed
// as a whole without touching rules that others own.
const (
	InboundChain  = "SKEIN_INBOUND"
	OutboundChain = "SKEIN_OUTBOUND"
)

// The proxy's ports.
const (
	DefaultInboundPort  = 4143
	DefaultOutboundPort = 4140
	// AdminPort (metrics, readiness, liveness) and ControlPort are served by the proxy itself, so
	// inbound connections to them are never redirected.
	AdminPort   = 4191
	ControlPort = 4190
	// DefaultProxyUID is the user the proxy container runs as, by convention.
	DefaultProxyUID = 2102
)

// maxMultiportWeight is how many ports one multiport match takes; a range counts as two.
const maxMultiportWeight = 15

// Config says where the proxy listens and which traffic bypasses it.
type Config struct {
	// ProxyUID is the user ID the proxy runs as. Its own connections are never redirected: that is
	// what lets the proxy reach the original destination instead of looping back into itself. It must
	// not be 0, which would exempt every root process in the pod.
	ProxyUID int
	// InboundPort receives inbound TCP connections; 0 means DefaultInboundPort.
	InboundPort int
	// OutboundPort receives outbound TCP connections; 0 means DefaultOutboundPort.
	OutboundPort int
	// SkipInboundPorts reach the application directly. AdminPort and ControlPort always do.
	SkipInboundPorts []int
	// SkipOutboundPorts are destination ports that leave the pod without the proxy.
	SkipOutboundPorts []int
}

func (c Config) withDefaults() Config {
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	return c
}

// Validate reports the first field of c that cannot make a rule, naming it.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.ProxyUID <= 0 {
		return fmt.Errorf("ProxyUID %d: must be a positive user ID (0 would exempt every root process from the proxy)", c.ProxyUID)
	}
	for _, f := range []struct {
		name string
		port int
	}{{"InboundPort", c.InboundPort}, {"OutboundPort", c.OutboundPort}} {
		if err := checkPort(f.port); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if c.InboundPort == c.OutboundPort {
		return fmt.Errorf("InboundPort and OutboundPort are both %d: the proxy could not tell the directions apart", c.InboundPort)
	}
	for _, f := range []struct {
		name  string
		ports []int
	}{{"SkipInboundPorts", c.SkipInboundPorts}, {"SkipOutboundPorts", c.SkipOutboundPorts}} {
		for _, p := range f.ports {
			if err := checkPort(p); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return nil
}

func checkPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d is outside 1-65535", p)
	}
	return nil
}

// Rules returns the rules for c in iptables-save form ("-A CHAIN ..."), the chains' own rules
// first and the jumps from PREROUTING and OUTPUT last, all in the nat table.
func Rules(c Config) ([]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	var rules []string
	add := func(format string, a ...any) { rules = append(rules, fmt.Sprintf(format, a...)) }

	inboundSkips := append([]int{ControlPort, AdminPort}, c.SkipInboundPorts...)
	for _, list := range multiportLists(inboundSkips) {
		add("-A %s -p tcp -m multiport --dports %s -j RETURN", InboundChain, list)
	}
	add("-A %s -p tcp -j REDIRECT --to-ports %d", InboundChain, c.InboundPort)

	// The proxy's own connections go where they were addressed, or the proxy would receive them again.
	add("-A %s -m owner --uid-owner %d -j RETURN", OutboundChain, c.ProxyUID)
	// Everything routed through lo stays in the pod: 127.0.0.0/8, and the pod's own IP too, which
	// is local and so leaves through lo. Such traffic never crosses the pod's boundary, so there is
	// nothing for the proxy to secure.
	add("-A %s -o lo -j RETURN", OutboundChain)
	for _, list := range multiportLists(c.SkipOutboundPorts) {
		add("-A %s -p tcp -m multiport --dports %s -j RETURN", OutboundChain, list)
	}
	add("-A %s -p tcp -j REDIRECT --to-ports %d", OutboundChain, c.OutboundPort)

	add("-A PREROUTING -p tcp -j %s", InboundChain)
	add("-A OUTPUT -p tcp -j %s", OutboundChain)
	return rules, nil
}

// Restore returns the iptables-restore document (for --noflush) that installs c's rules in a nat
// table that has none of Skein's yet. It is what `proxy-init --dry-run` prints.
func Restore(c Config) (string, error) {
	return RestoreOver(c, "")
}

// RestoreOver returns the iptables-restore document (for --noflush) that leaves exactly c's rules
// in a nat table whose current state is saved (the output of `iptables-save -t nat`). Declaring
// Skein's chains flushes them, and jumps to them that saved already holds are deleted before new
// ones are added, so applying the document any number of times leaves one copy.
func RestoreOver(c Config, saved string) (string, error) {
	rules, err := Rules(c)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", InboundChain, OutboundChain)
	for _, jump := range jumpsToOurChains(saved) {
		b.WriteString("-D" + strings.TrimPrefix(jump, "-A") + "\n")
	}
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// Removal returns the iptables-restore document (for --noflush) that takes Skein's chains, and
// every jump to them, out of a nat table whose current state is saved. It is empty when there is
// nothing of Skein's to remove.
func Removal(saved string) string {
	jumps := jumpsToOurChains(saved)
	present := map[string]bool{}
	for _, line := range strings.Split(saved, "\n") {
		for _, chain := range []string{InboundChain, OutboundChain} {
			if strings.HasPrefix(line, ":"+chain+" ") {
				present[chain] = true
			}
		}
	}
	if len(jumps) == 0 && len(present) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, jump := range jumps {
		b.WriteString("-D" + strings.TrimPrefix(jump, "-A") + "\n")
	}
	// Flush both before deleting either, in case one ever refers to the other.
	for _, chain := range []string{InboundChain, OutboundChain} {
		if present[chain] {
			fmt.Fprintf(&b, "-F %s\n", chain)
		}
	}
	for _, chain := range []string{InboundChain, OutboundChain} {
		if present[chain] {
			fmt.Fprintf(&b, "-X %s\n", chain)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// jumpsToOurChains returns the rules of saved, as iptables-save printed them, that jump to one of
// Skein's chains from a chain that is not Skein's.
func jumpsToOurChains(saved string) []string {
	var jumps []string
	for _, line := range strings.Split(saved, "\n") {
		line = strings.TrimSpace(line)
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" || fields[1] == InboundChain || fields[1] == OutboundChain {
			continue
		}
		for i := 2; i+1 < len(fields); i++ {
			if (fields[i] == "-j" || fields[i] == "--jump") && (fields[i+1] == InboundChain || fields[i+1] == OutboundChain) {
				jumps = append(jumps, line)
				break
			}
		}
	}
	return jumps
}

// portRange is an inclusive range of ports; a single port has first == last.
type portRange struct{ first, last int }

func (r portRange) weight() int {
	if r.first == r.last {
		return 1
	}
	return 2
}

// compact sorts ports, drops duplicates and merges consecutive ports into ranges.
func compact(ports []int) []portRange {
	ports = slices.Clone(ports)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	var ranges []portRange
	for _, p := range ports {
		if n := len(ranges); n > 0 && ranges[n-1].last == p-1 {
			ranges[n-1].last = p
			continue
		}
		ranges = append(ranges, portRange{p, p})
	}
	return ranges
}

// multiportLists returns the --dports arguments that match ports, each within multiport's limit
// of 15 ports per match, where a range counts as two.
func multiportLists(ports []int) []string {
	var lists []string
	var cur []string
	weight := 0
	for _, r := range compact(ports) {
		if weight+r.weight() > maxMultiportWeight {
			lists = append(lists, strings.Join(cur, ","))
			cur, weight = nil, 0
		}
		if r.first == r.last {
			cur = append(cur, strconv.Itoa(r.first))
		} else {
			cur = append(cur, fmt.Sprintf("%d:%d", r.first, r.last))
		}
		weight += r.weight()
	}
	if len(cur) > 0 {
		lists = append(lists, strings.Join(cur, ","))
	}
	return lists
}

// ParsePorts reads a comma-separated list of ports and inclusive ranges, such as "25,8000-8010",
// as proxy-init's flags and the pod annotations that feed them spell it. Spaces around items are
// ignored; an empty string is no ports.
func ParsePorts(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ports []int
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, errors.New("empty item in the list (two commas in a row, or a trailing comma)")
		}
		lo, hi, isRange := strings.Cut(item, "-")
		if !isRange {
			p, err := parsePort(item)
			if err != nil {
				return nil, err
			}
			ports = append(ports, p)
			continue
		}
		first, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		last, err := parsePort(hi)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		if last < first {
			return nil, fmt.Errorf("%q: the range ends before it starts", item)
		}
		for p := first; p <= last; p++ {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if err := checkPort(p); err != nil {
		return 0, err
	}
	return p, nil
}

// FormatPorts writes ports the way ParsePorts reads them, consecutive ports as ranges:
// FormatPorts([]int{80, 8000, 8001, 8002}) is "80,8000-8002".
func FormatPorts(ports []int) string {
	var items []string
	for _, r := range compact(ports) {
		if r.first == r.last {
			items = append(items, strconv.Itoa(r.first))
		} else {
			items = append(items, fmt.Sprintf("%d-%d", r.first, r.last))
		}
	}
	return strings.Join(items, ",")
}
