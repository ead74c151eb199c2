package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
)

func newInjectCommand() *cobra.Command {
	var file, kubeconfig, controlPlaneNamespace, meshConfigFile, trustBundleFile string
	cmd := &cobra.Command{
		Use:   "inject -f FILE",
		Short: "Add the Skein proxy to the pods of Kubernetes manifests",
		Long: `Reads manifests (YAML or JSON, several documents, List kinds; -f - for stdin) and writes them
to stdout with the proxy added to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and
CronJob, exactly as the pod injector webhook adds it to a pod in a namespace annotated
mesh.skein.dev/inject: enabled. A pod template annotated mesh.skein.dev/inject: disabled, on the
host's network, already meshed or in the control plane's namespace is left as it is.

The MeshConfig, the trust bundle and the objects' namespaces' annotations are read from the cluster
(--kubeconfig, else $KUBECONFIG); with --meshconfig and --trust-bundle nothing is read from a cluster.
What was done to each object is written to stderr.`,
		Example: `  skein inject -f deploy.yaml | kubectl apply -f -
  kubectl get deploy web -o yaml | skein inject -f - | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f is required: a manifest file, or - for stdin")
			}
			in, err := readInput(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			config, namespaces, err := injectConfig(cmd, kubeconfig, controlPlaneNamespace, meshConfigFile, trustBundleFile)
			if err != nil {
				return err
			}
			results, err := config.Manifests(bytes.NewReader(in), cmd.OutOrStdout(), asked(namespaces))
			for _, r := range results {
				verb := "injected"
				if !r.Inject {
					verb = "skipped"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: %s\n", r.Object, verb, r.Reason)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "Manifest file to inject, or - for stdin")
	f.StringVar(&kubeconfig, "kubeconfig", "", "Kubeconfig of the cluster to read the mesh's configuration from (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&controlPlaneNamespace, "control-plane-namespace", "skein-system", "Namespace of Skein's control plane")
	f.StringVar(&meshConfigFile, "meshconfig", "", "Read the MeshConfig from this file instead of the cluster (with --trust-bundle)")
	f.StringVar(&trustBundleFile, "trust-bundle", "", "Read the trust bundle (PEM) from this file instead of the cluster (with --meshconfig)")
	return cmd
}

// asked treats every object as in a namespace that asks for injection: running skein inject is
// asking for it. A pod template's own "disabled" still wins, as with the webhook.
func asked(lookup inject.NamespaceLookup) inject.NamespaceLookup {
	return func(name string) (inject.Namespace, error) {
		ns, err := lookup(name)
		annotations := maps.Clone(ns.Annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[meshv1.InjectAnnotation] = inject.Enabled
		ns.Annotations = annotations
		return ns, err
	}
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(file)
}

// injectConfig reads the mesh's configuration from files or from the cluster, and says how to look
// up namespaces: in the cluster, or, offline, as having no annotations.
func injectConfig(cmd *cobra.Command, kubeconfig, cpNamespace, meshConfigFile, trustBundleFile string) (inject.Config, inject.NamespaceLookup, error) {
	if (meshConfigFile == "") != (trustBundleFile == "") {
		return inject.Config{}, nil, errors.New("--meshconfig and --trust-bundle go together: give both to work offline, or neither to read the cluster")
	}
	if meshConfigFile != "" {
		mc := &meshv1.MeshConfig{}
		b, err := os.ReadFile(meshConfigFile)
		if err != nil {
			return inject.Config{}, nil, err
		}
		if err := yaml.UnmarshalStrict(b, mc); err != nil {
			return inject.Config{}, nil, fmt.Errorf("--meshconfig %s: %w", meshConfigFile, err)
		}
		anchors, err := os.ReadFile(trustBundleFile)
		if err != nil {
			return inject.Config{}, nil, err
		}
		offline := func(name string) (inject.Namespace, error) { return inject.Namespace{Name: name}, nil }
		return inject.Config{Mesh: mc.Spec, ControlPlaneNamespace: cpNamespace, TrustAnchors: string(anchors)}, offline, nil
	}
	cfg, err := loadKubeconfig(kubeconfig).ClientConfig()
	if err != nil {
		return inject.Config{}, nil, fmt.Errorf("reaching the cluster for the mesh's configuration (or give --meshconfig and --trust-bundle): %w", err)
	}
	c, err := kubeClient(cfg)
	if err != nil {
		return inject.Config{}, nil, err
	}
	ctx := cmd.Context()
	config, err := inject.ConfigFrom(ctx, c, cpNamespace)
	if err != nil {
		return inject.Config{}, nil, err
	}
	namespaces := func(name string) (inject.Namespace, error) {
		if name == "" {
			return inject.Namespace{}, nil
		}
		return inject.NamespaceFrom(ctx, c, name)
	}
	return config, namespaces, nil
}
