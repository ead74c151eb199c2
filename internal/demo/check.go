package demo

import (
	"context"
	"errors"
	"strings"

	"github.com/skeinmesh/skein/internal/check"
)

// checkMesh runs `skein check` over the demo's mesh, as a user would after installing: the
// control plane runs as a process here, so its services are dialled at their addresses.
func (d *demo) checkMesh(ctx context.Context) error {
	d.say("skein check --identity-addr " + d.identityAddr + " --xds-addr " + d.xdsAddr)
	env, err := check.NewEnv(d.cluster.Config, Namespace)
	if err != nil {
		return err
	}
	env.IdentityAddr, env.XDSAddr = d.identityAddr, d.xdsAddr
	results := check.Run(ctx, env, check.Installed())
	var b strings.Builder
	if err := check.Print(&b, results); err != nil {
		return err
	}
	d.printf("%s", indent(b.String()))
	if check.Failed(results) {
		return errors.New("skein check failed on the demo's mesh")
	}
	return nil
}
