package iptables

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestRulesForDefaults(t *testing.T) {
	got, err := Rules(Config{ProxyUID: 2102})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-A SKEIN_INBOUND -p tcp -m multiport --dports 4190:4191 -j RETURN",
		"-A SKEIN_INBOUND -p tcp -j REDIRECT --to-ports 4143",
		"-A SKEIN_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
		"-A SKEIN_OUTBOUND -o lo -j RETURN",
		"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
		"-A PREROUTING -p tcp -j SKEIN_INBOUND",
		"-A OUTPUT -p tcp -j SKEIN_OUTBOUND",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRules(t *testing.T) {
	many := func(from, n, step int) []int {
		var ports []int
		for i := range n {
			ports = append(ports, from+i*step)
		}
		return ports
	}
	tests := []struct {
		name   string
		config Config
		// contains are rules that must be there, in this order (other rules may come between).
		contains []string
		// multiportRules is how many multiport rules each chain must have.
		inboundMultiport, outboundMultiport int
	}{
		{
			name:   "ports and uid from the config",
			config: Config{ProxyUID: 1337, InboundPort: 15006, OutboundPort: 15001},
			contains: []string{
				"-A SKEIN_INBOUND -p tcp -j REDIRECT --to-ports 15006",
				"-A SKEIN_OUTBOUND -m owner --uid-owner 1337 -j RETURN",
				"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",
			},
			inboundMultiport: 1,
		},
		{
			name:   "skipped ports come before the redirect",
			config: Config{ProxyUID: 2102, SkipInboundPorts: []int{9090, 22}, SkipOutboundPorts: []int{5432, 3306}},
			contains: []string{
				"-A SKEIN_INBOUND -p tcp -m multiport --dports 22,4190:4191,9090 -j RETURN",
				"-A SKEIN_INBOUND -p tcp -j REDIRECT --to-ports 4143",
				"-A SKEIN_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
				"-A SKEIN_OUTBOUND -o lo -j RETURN",
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 3306,5432 -j RETURN",
				"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
			},
			inboundMultiport: 1, outboundMultiport: 1,
		},
		{
			name:   "consecutive and duplicate ports collapse into one range",
			config: Config{ProxyUID: 2102, SkipOutboundPorts: append(many(8000, 11, 1), 8005, 8010)},
			contains: []string{
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 8000:8010 -j RETURN",
			},
			inboundMultiport: 1, outboundMultiport: 1,
		},
		{
			name:   "exactly 15 single ports fit one multiport match",
			config: Config{ProxyUID: 2102, SkipOutboundPorts: many(1000, 15, 2)},
			contains: []string{
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 1000,1002,1004,1006,1008,1010,1012,1014,1016,1018,1020,1022,1024,1026,1028 -j RETURN",
			},
			inboundMultiport: 1, outboundMultiport: 1,
		},
		{
			name:   "16 single ports take two matches",
			config: Config{ProxyUID: 2102, SkipOutboundPorts: many(1000, 16, 2)},
			contains: []string{
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 1000,1002,1004,1006,1008,1010,1012,1014,1016,1018,1020,1022,1024,1026,1028 -j RETURN",
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 1030 -j RETURN",
			},
			inboundMultiport: 1, outboundMultiport: 2,
		},
		{
			// 4190:4191 takes two of the first match's 15, leaving room for 13 single ports.
			name:             "inbound skips share the first match with the proxy's own ports",
			config:           Config{ProxyUID: 2102, SkipInboundPorts: many(100, 14, 10)},
			inboundMultiport: 2,
		},
		{
			// Each range counts as two, so 8 ranges weigh 16: seven in the first match, one in the second.
			name:   "ranges count twice",
			config: Config{ProxyUID: 2102, SkipOutboundPorts: slices.Concat(many(100, 2, 1), many(200, 2, 1), many(300, 2, 1), many(400, 2, 1), many(500, 2, 1), many(600, 2, 1), many(700, 2, 1), many(800, 2, 1))},
			contains: []string{
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 100:101,200:201,300:301,400:401,500:501,600:601,700:701 -j RETURN",
				"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 800:801 -j RETURN",
			},
			inboundMultiport: 1, outboundMultiport: 2,
		},
		{
			name:              "a wide range is one item",
			config:            Config{ProxyUID: 2102, SkipOutboundPorts: many(1, 65535, 1)},
			contains:          []string{"-A SKEIN_OUTBOUND -p tcp -m multiport --dports 1:65535 -j RETURN"},
			inboundMultiport:  1,
			outboundMultiport: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := Rules(tt.config)
			if err != nil {
				t.Fatal(err)
			}
			if !containsInOrder(rules, tt.contains) {
				t.Errorf("rules:\n%s\ndo not contain, in this order:\n%s", strings.Join(rules, "\n"), strings.Join(tt.contains, "\n"))
			}
			in, out := multiportPorts(t, rules, InboundChain), multiportPorts(t, rules, OutboundChain)
			if n := len(in); n != tt.inboundMultiport {
				t.Errorf("%d multiport rules in %s, want %d", n, InboundChain, tt.inboundMultiport)
			}
			if n := len(out); n != tt.outboundMultiport {
				t.Errorf("%d multiport rules in %s, want %d", n, OutboundChain, tt.outboundMultiport)
			}
			// The matches skip exactly the configured ports, no more and no fewer.
			wantIn := append([]int{ControlPort, AdminPort}, tt.config.SkipInboundPorts...)
			if got, want := union(in), set(wantIn); !slices.Equal(got, want) {
				t.Errorf("inbound rules skip %d ports, want %d (%s)", len(got), len(want), FormatPorts(wantIn))
			}
			if got, want := union(out), set(tt.config.SkipOutboundPorts); !slices.Equal(got, want) {
				t.Errorf("outbound rules skip %d ports, want %d (%s)", len(got), len(want), FormatPorts(tt.config.SkipOutboundPorts))
			}
			// The redirect is each chain's last rule: a skip after it would never match.
			for _, chain := range []string{InboundChain, OutboundChain} {
				var last string
				for _, r := range rules {
					if strings.HasPrefix(r, "-A "+chain+" ") {
						last = r
					}
				}
				if !strings.Contains(last, "-j REDIRECT") {
					t.Errorf("last rule of %s is %q, want the redirect", chain, last)
				}
			}
		})
	}
}

// multiportPorts returns, per multiport rule of chain, the ports it matches, and fails the test if
// one matches more than multiport allows.
func multiportPorts(t *testing.T, rules []string, chain string) [][]int {
	t.Helper()
	var matches [][]int
	for _, r := range rules {
		fields := strings.Fields(r)
		i := slices.Index(fields, "--dports")
		if fields[1] != chain || i < 0 {
			continue
		}
		var ports []int
		weight := 0
		for _, item := range strings.Split(fields[i+1], ",") {
			lo, hi, isRange := strings.Cut(item, ":")
			first, _ := strconv.Atoi(lo)
			last := first
			weight++
			if isRange {
				last, _ = strconv.Atoi(hi)
				weight++
			}
			for p := first; p <= last; p++ {
				ports = append(ports, p)
			}
		}
		if weight > 15 {
			t.Errorf("rule %q names %d ports; multiport takes at most 15", r, weight)
		}
		matches = append(matches, ports)
	}
	return matches
}

func union(lists [][]int) []int { return set(slices.Concat(lists...)) }

func set(ports []int) []int {
	ports = slices.Clone(ports)
	slices.Sort(ports)
	return slices.Compact(ports)
}

func containsInOrder(rules, want []string) bool {
	i := 0
	for _, r := range rules {
		if i < len(want) && r == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		config  Config
		wantErr string // a part of the error; empty for none
	}{
		{name: "defaults", config: Config{ProxyUID: 2102}},
		{name: "no proxy uid", config: Config{}, wantErr: "ProxyUID 0"},
		{name: "negative proxy uid", config: Config{ProxyUID: -1}, wantErr: "ProxyUID -1"},
		{name: "inbound port too big", config: Config{ProxyUID: 1, InboundPort: 70000}, wantErr: "InboundPort: port 70000"},
		{name: "negative outbound port", config: Config{ProxyUID: 1, OutboundPort: -5}, wantErr: "OutboundPort: port -5"},
		{name: "same ports", config: Config{ProxyUID: 1, InboundPort: 4140}, wantErr: "both 4140"},
		{name: "bad skipped inbound port", config: Config{ProxyUID: 1, SkipInboundPorts: []int{80, 0}}, wantErr: "SkipInboundPorts: port 0"},
		{name: "bad skipped outbound port", config: Config{ProxyUID: 1, SkipOutboundPorts: []int{65536}}, wantErr: "SkipOutboundPorts: port 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.config.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, rerr := Restore(tt.config); (rerr == nil) != (err == nil) {
				t.Errorf("Restore error %v disagrees with Validate's %v", rerr, err)
			}
		})
	}
}

func TestRestoreOver(t *testing.T) {
	config := Config{ProxyUID: 2102, SkipOutboundPorts: []int{25}}
	tests := []struct {
		name  string
		saved string
		// wantDeletes are the -D lines the document must start its rules with.
		wantDeletes []string
	}{
		{name: "empty table", saved: ""},
		{
			name: "a table with someone else's rules",
			saved: `# Generated by iptables-nft-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:CNI_HOSTPORT - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI_HOSTPORT
-A CNI_HOSTPORT -p tcp --dport 80 -j DNAT --to-destination 10.0.0.1:80
COMMIT
`,
		},
		{
			name: "our rules applied twice already",
			saved: `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SKEIN_INBOUND - [0:0]
:SKEIN_OUTBOUND - [0:0]
-A PREROUTING -p tcp -j SKEIN_INBOUND
-A PREROUTING -p tcp -j SKEIN_INBOUND
-A OUTPUT -p tcp -j SKEIN_OUTBOUND
-A SKEIN_INBOUND -p tcp -j REDIRECT --to-ports 4143
-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140
COMMIT
`,
			wantDeletes: []string{
				"-D PREROUTING -p tcp -j SKEIN_INBOUND",
				"-D PREROUTING -p tcp -j SKEIN_INBOUND",
				"-D OUTPUT -p tcp -j SKEIN_OUTBOUND",
			},
		},
		{
			name: "a jump someone else wrote differently",
			saved: `*nat
-A OUTPUT -d 10.96.0.0/12 -p tcp -m tcp --jump SKEIN_OUTBOUND
COMMIT
`,
			wantDeletes: []string{"-D OUTPUT -d 10.96.0.0/12 -p tcp -m tcp --jump SKEIN_OUTBOUND"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := RestoreOver(config, tt.saved)
			if err != nil {
				t.Fatal(err)
			}
			rules, _ := Rules(config)
			want := slices.Concat(
				[]string{"*nat", ":SKEIN_INBOUND - [0:0]", ":SKEIN_OUTBOUND - [0:0]"},
				tt.wantDeletes, rules, []string{"COMMIT", ""})
			if got := strings.Split(doc, "\n"); !slices.Equal(got, want) {
				t.Errorf("RestoreOver:\n%s\nwant:\n%s", doc, strings.Join(want, "\n"))
			}
			// Whatever was there, the document adds one jump from each built-in chain.
			for _, jump := range []string{"-A PREROUTING -p tcp -j SKEIN_INBOUND", "-A OUTPUT -p tcp -j SKEIN_OUTBOUND"} {
				if n := strings.Count(doc, jump+"\n"); n != 1 {
					t.Errorf("%d copies of %q, want 1", n, jump)
				}
			}
		})
	}
}

func TestRemoval(t *testing.T) {
	tests := []struct {
		name  string
		saved string
		want  string
	}{
		{name: "nothing there", saved: "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", want: ""},
		{
			name: "someone else's jumps stay",
			saved: `*nat
:PREROUTING ACCEPT [0:0]
:KUBE_SERVICES - [0:0]
-A PREROUTING -j KUBE_SERVICES
COMMIT
`,
			want: "",
		},
		{
			name: "our chains and jumps",
			saved: `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SKEIN_INBOUND - [0:0]
:SKEIN_OUTBOUND - [0:0]
-A PREROUTING -j KUBE_SERVICES
-A PREROUTING -p tcp -j SKEIN_INBOUND
-A OUTPUT -p tcp -j SKEIN_OUTBOUND
-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140
COMMIT
`,
			want: `*nat
-D PREROUTING -p tcp -j SKEIN_INBOUND
-D OUTPUT -p tcp -j SKEIN_OUTBOUND
-F SKEIN_INBOUND
-F SKEIN_OUTBOUND
-X SKEIN_INBOUND
-X SKEIN_OUTBOUND
COMMIT
`,
		},
		{
			name:  "a chain left without its jump",
			saved: "*nat\n:SKEIN_OUTBOUND - [0:0]\nCOMMIT\n",
			want:  "*nat\n-F SKEIN_OUTBOUND\n-X SKEIN_OUTBOUND\nCOMMIT\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Removal(tt.saved); got != tt.want {
				t.Errorf("Removal:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "80", want: []int{80}},
		{in: "80, 443 ,8080", want: []int{80, 443, 8080}},
		{in: "8000-8003,22", want: []int{8000, 8001, 8002, 8003, 22}},
		{in: "7-7", want: []int{7}},
		{in: "80,,81", wantErr: "empty item"},
		{in: "80,", wantErr: "empty item"},
		{in: "http", wantErr: `"http" is not a port number`},
		{in: "0", wantErr: "port 0 is outside"},
		{in: "65536", wantErr: "port 65536 is outside"},
		{in: "9000-8000", wantErr: "ends before it starts"},
		{in: "8000-", wantErr: `"8000-"`},
		{in: "1-2-3", wantErr: `"1-2-3"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParsePorts(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatPorts(t *testing.T) {
	tests := []struct {
		in   []int
		want string
	}{
		{in: nil, want: ""},
		{in: []int{443, 80, 80}, want: "80,443"},
		{in: []int{8002, 8000, 8001, 22}, want: "22,8000-8002"},
	}
	for _, tt := range tests {
		got := FormatPorts(tt.in)
		if got != tt.want {
			t.Errorf("FormatPorts(%v) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParsePorts(got)
		if err != nil || !slices.Equal(back, set(tt.in)) {
			t.Errorf("ParsePorts(FormatPorts(%v)) = %v, %v; want the same ports", tt.in, back, err)
		}
	}
}
