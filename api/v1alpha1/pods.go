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

// InMeshScope tells whether a pod counts in "meshed/total" figures: one that has not finished and
// has a network of its own, which a proxy could serve.
func InMeshScope(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && !pod.Spec.HostNetwork
}
