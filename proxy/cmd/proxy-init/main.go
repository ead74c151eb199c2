// Command proxy-init installs, in the network namespace it runs in, the iptables rules that send
// the namespace's TCP traffic through skein-proxy. Skein's pod injector runs it as an init
// container; on a VM an operator runs it by hand. Package proxy/iptables describes the rules.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/skeinmesh/skein/proxy/iptables"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command, returning its exit code: 0 on success, 1 when iptables fails, 2 for bad
// input.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxy-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: proxy-init [flags]\n\n"+
			"Redirects this network namespace's inbound TCP to the proxy's inbound port and its outbound\n"+
			"TCP to the proxy's outbound port, except the proxy's own traffic, loopback and skipped ports.\n"+
			"Running it again replaces the rules. Port lists are comma-separated ports and ranges: 25,8000-8010.\n\n")
		fs.PrintDefaults()
	}
	proxyUID := fs.Int("proxy-uid", iptables.DefaultProxyUID, "user ID the proxy runs as; its connections are never redirected")
	inboundPort := fs.Int("inbound-port", iptables.DefaultInboundPort, "port the proxy accepts inbound connections on")
	outboundPort := fs.Int("outbound-port", iptables.DefaultOutboundPort, "port the proxy accepts outbound connections on")
	skipInbound := fs.String("skip-inbound-ports", "", fmt.Sprintf("inbound ports that reach the application directly (%d and %d always do)", iptables.ControlPort, iptables.AdminPort))
	skipOutbound := fs.String("skip-outbound-ports", "", "destination ports that bypass the proxy")
	dryRun := fs.Bool("dry-run", false, "print the iptables-restore input instead of applying it")
	remove := fs.Bool("remove", false, "remove Skein's rules instead of installing them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy-init: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q: all input is given with flags", fs.Arg(0))
	}

	if *remove {
		if *dryRun {
			return fail(2, "--dry-run and --remove cannot be combined")
		}
		backend, err := iptables.DetectBackend(ctx)
		if err != nil {
			return fail(1, "%v", err)
		}
		if err := backend.Remove(ctx); err != nil {
			return fail(1, "removing the rules: %v", err)
		}
		fmt.Fprintf(stdout, "Removed Skein's rules with %s (%s)\n", backend.Restore, backend.Mode)
		return 0
	}

	config, err := configFromFlags(*proxyUID, *inboundPort, *outboundPort, *skipInbound, *skipOutbound)
	if err != nil {
		return fail(2, "%v", err)
	}
	doc, err := iptables.Restore(config)
	if err != nil {
		return fail(2, "%v", err)
	}
	if *dryRun {
		fmt.Fprint(stdout, doc)
		return 0
	}
	backend, err := iptables.DetectBackend(ctx)
	if err != nil {
		return fail(1, "%v", err)
	}
	if err := backend.Apply(ctx, config); err != nil {
		return fail(1, "applying the rules: %v", err)
	}
	// The init container's log is where an operator looks for what was set up.
	rules, _ := iptables.Rules(config)
	fmt.Fprintf(stdout, "Applied Skein's rules to the nat table with %s (%s):\n%s\n", backend.Restore, backend.Mode, strings.Join(rules, "\n"))
	return 0
}

// configFromFlags checks each flag's value and names the flag that is wrong.
func configFromFlags(proxyUID, inboundPort, outboundPort int, skipInbound, skipOutbound string) (iptables.Config, error) {
	if proxyUID <= 0 {
		return iptables.Config{}, fmt.Errorf("--proxy-uid %d: must be a positive user ID (0 would exempt every root process from the proxy)", proxyUID)
	}
	for _, f := range []struct {
		name string
		port int
	}{{"--inbound-port", inboundPort}, {"--outbound-port", outboundPort}} {
		if f.port < 1 || f.port > 65535 {
			return iptables.Config{}, fmt.Errorf("%s %d: must be a port in 1-65535", f.name, f.port)
		}
	}
	if inboundPort == outboundPort {
		return iptables.Config{}, fmt.Errorf("--inbound-port and --outbound-port are both %d: they must differ", inboundPort)
	}
	inbound, err := iptables.ParsePorts(skipInbound)
	if err != nil {
		return iptables.Config{}, fmt.Errorf("--skip-inbound-ports: %w", err)
	}
	outbound, err := iptables.ParsePorts(skipOutbound)
	if err != nil {
		return iptables.Config{}, fmt.Errorf("--skip-outbound-ports: %w", err)
	}
	return iptables.Config{
		ProxyUID:          proxyUID,
		InboundPort:       inboundPort,
		OutboundPort:      outboundPort,
		SkipInboundPorts:  inbound,
		SkipOutboundPorts: outbound,
	}, nil
}
