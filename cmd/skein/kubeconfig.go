package main

import (
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/scheme"
)

// loadKubeconfig loads the kubeconfig as kubectl does: path when given, else $KUBECONFIG, else
// ~/.kube/config.
func loadKubeconfig(path string) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
}

// kubeClient is a client with Skein's scheme for the cluster of cfg.
func kubeClient(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: scheme.New()})
}
