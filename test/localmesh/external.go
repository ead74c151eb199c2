package localmesh

import (
	"os"
	"os/exec"
	"strings"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/test/netns"
)

// AddHost makes a host outside the cluster (a VM): a network namespace, reached only over its veth,
// where RunExternal later runs the workload and its proxy.
func (m *Mesh) AddHost(name string) (*netns.Pod, error) { return m.Network.AddPod(name) }

// RunExternal runs, on a host from AddHost, the workload and skein-proxy configured by nothing but
// env (what `skein external-workload bootstrap` wrote), behind proxy-init's rules, and waits for the
// proxy to be ready.
func (m *Mesh) RunExternal(host *netns.Pod, env []string) (*Pod, error) {
	var id spiffe.ID
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SKEIN_IDENTITY="); ok {
			var err error
			if id, err = spiffe.Parse(v); err != nil {
				return nil, err
			}
		}
	}
	p := &Pod{Pod: host, ID: id, Admin: "http://" + host.IP.String() + ":4191", mesh: m,
		newWorkload: func() *exec.Cmd {
			cmd := host.Command(m.ctx, m.workload, "-mode", "serve", "-addr", ":8080", "-tcp-addr", ":9000")
			cmd.Env = append(os.Environ(), "POD_NAME="+host.Name)
			return cmd
		},
		newProxy: func() *exec.Cmd {
			cmd := host.CommandAs(m.ctx, ProxyUID, m.proxy)
			cmd.Env = append(os.Environ(), env...)
			return cmd
		},
	}
	// The rules first, as for a pod (see addPod).
	if err := host.ApplyProxyInit(m.ctx, m.proxyIn, iptables.Config{ProxyUID: ProxyUID}); err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, p.WaitReady()
}

// StartProxy starts the proxy again and waits for it to be ready.
func (p *Pod) StartProxy() error {
	var err error
	if p.proxy, p.proxyEx, err = p.mesh.start(p.newProxy(), p.Name+" proxy"); err != nil {
		return err
	}
	return p.WaitReady()
}
