package localmesh

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// process is a container's command, environment and user, resolved.
type process struct {
	bin  string
	args []string
	env  []string
	uid  int64
	// rewrite maps the container's mount paths to where RunPod wrote the volumes.
	rewrite *strings.Replacer
}

// resolve works out how container c runs.
func (r *podRun) resolve(c corev1.Container) (*process, error) {
	bin, ok := r.images[c.Image]
	if !ok {
		return nil, fmt.Errorf("image %s: no local binary stands for it", c.Image)
	}
	// Longest mount path first, so that a nested mount wins over its parent.
	mounts := append([]corev1.VolumeMount(nil), c.VolumeMounts...)
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].MountPath) > len(mounts[j].MountPath) })
	var pairs []string
	for _, vm := range mounts {
		pairs = append(pairs, vm.MountPath, filepath.Join(r.volumePath(vm.Name), vm.SubPath))
	}
	p := &process{bin: bin, uid: r.user(c), rewrite: strings.NewReplacer(pairs...)}
	vars := map[string]string{}
	for _, e := range c.Env {
		value := expand(e.Value, vars)
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("env %s: only fieldRef is supported by RunPod", e.Name)
			}
			v, err := r.field(e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			value = v
		}
		value = p.rewrite.Replace(value)
		vars[e.Name] = value
		p.env = append(p.env, e.Name+"="+value)
	}
	p.env = append(p.env, "PATH="+os.Getenv("PATH"))
	args, err := r.commandArgs(c, bin, c.Command, c.Args, vars)
	if err != nil {
		return nil, err
	}
	for _, a := range args {
		p.args = append(p.args, p.rewrite.Replace(a))
	}
	return p, nil
}

// commandArgs is what follows the binary: a command's own arguments (its first word must name the
// binary) and then args, with $(VAR) references expanded as the kubelet does.
func (r *podRun) commandArgs(c corev1.Container, bin string, command, args []string, vars map[string]string) ([]string, error) {
	var out []string
	if len(command) > 0 {
		if path.Base(command[0]) != filepath.Base(bin) {
			return nil, fmt.Errorf("command %q: in image %s, RunPod only runs %s", command[0], c.Image, filepath.Base(bin))
		}
		args = append(append([]string(nil), command[1:]...), args...)
	}
	for _, a := range args {
		out = append(out, expand(a, vars))
	}
	return out, nil
}

// field is the value of an env fieldRef, as the kubelet resolves it.
func (r *podRun) field(fieldPath string) (string, error) {
	switch fieldPath {
	case "metadata.name":
		return r.pod.Name, nil
	case "metadata.namespace":
		return r.pod.Namespace, nil
	case "metadata.uid":
		return string(r.pod.UID), nil
	case "spec.serviceAccountName":
		return r.pod.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return r.pod.Spec.NodeName, nil
	case "status.podIP":
		return r.np.IP.String(), nil
	case "status.hostIP":
		return r.m.Network.Gateway.String(), nil
	}
	return "", fmt.Errorf("fieldRef %s is not supported by RunPod", fieldPath)
}

// user is the container's user: its own securityContext's, else the pod's, else root.
func (r *podRun) user(c corev1.Container) int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser
	}
	if sc := r.pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return *sc.RunAsUser
	}
	return 0
}

// expand replaces $(VAR) with the value of VAR defined before, as the kubelet does: $$ is a
// literal $, and a reference to a variable not defined is left as it is.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
