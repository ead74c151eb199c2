package localmesh

import (
	"fmt"
	"os"
	"path/filepath"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// volumePath is where volume name is written.
func (r *podRun) volumePath(name string) string { return filepath.Join(r.dir, "volumes", name) }

// writeVolumes writes each volume's files as the kubelet would mount them. Files are readable by
// every user (the kubelet's default mode 0644), since containers may run as any user.
func (r *podRun) writeVolumes() error {
	for _, v := range r.pod.Spec.Volumes {
		dir := r.volumePath(v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var files map[string][]byte
		var err error
		switch {
		case v.EmptyDir != nil:
			err = os.Chmod(dir, 0o777)
		case v.Projected != nil:
			files, err = r.projected(v.Projected)
		case v.ConfigMap != nil:
			files, err = r.configMap(v.ConfigMap.Name, v.ConfigMap.Items)
		default:
			err = fmt.Errorf("of a kind RunPod does not write")
		}
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *podRun) projected(v *corev1.ProjectedVolumeSource) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, s := range v.Sources {
		switch {
		case s.ServiceAccountToken != nil:
			token, err := r.token(s.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			files[s.ServiceAccountToken.Path] = token
		case s.ConfigMap != nil:
			more, err := r.configMap(s.ConfigMap.Name, s.ConfigMap.Items)
			if err != nil {
				return nil, err
			}
			for k, v := range more {
				files[k] = v
			}
		default:
			return nil, fmt.Errorf("a projected source RunPod does not write")
		}
	}
	return files, nil
}

// token asks the API server for the token the kubelet would project: for the pod's ServiceAccount
// and the audience asked, bound to the pod, so that it stops being valid when the pod goes.
func (r *podRun) token(p *corev1.ServiceAccountTokenProjection) ([]byte, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: r.pod.Namespace, Name: r.pod.Spec.ServiceAccountName}}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		ExpirationSeconds: p.ExpirationSeconds,
		BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID},
	}}
	if p.Audience != "" {
		tr.Spec.Audiences = []string{p.Audience}
	}
	if err := r.m.Client.SubResource("token").Create(r.m.ctx, sa, tr); err != nil {
		return nil, fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	return []byte(tr.Status.Token), nil
}

func (r *podRun) configMap(name string, items []corev1.KeyToPath) (map[string][]byte, error) {
	cm := &corev1.ConfigMap{}
	if err := r.m.Client.Get(r.m.ctx, client.ObjectKey{Namespace: r.pod.Namespace, Name: name}, cm); err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s: %w", name, err)
	}
	files := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range cm.Data {
			files[k] = []byte(v)
		}
	}
	for _, it := range items {
		files[it.Path] = []byte(cm.Data[it.Key])
	}
	return files, nil
}
