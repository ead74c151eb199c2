package v1alpha1

import corev1 "k8s.io/api/core/v1"

// IsMeshed tells whether a pod runs the proxy, as a native sidecar or as a classic one.
func IsMeshed(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == ProxyContainerName {
				return true
			}
		}
	}
	return false
}
