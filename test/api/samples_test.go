package api_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/localcluster"
)

var _ = Describe("The samples", func() {
	It("are each accepted by the API server through kubectl", func() {
		root, err := localcluster.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		dir := filepath.Join(root, "config", "samples")
		files, err := filepath.Glob(filepath.Join(dir, "mesh_v1alpha1_*.yaml"))
		Expect(err).NotTo(HaveOccurred())

		kinds := map[string]bool{}
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(data, &u.Object)).To(Succeed())
			kinds[u.GetKind()] = true

			out, err := cluster.Kubectl(ctx, nil, "apply", "-f", f)
			Expect(err).NotTo(HaveOccurred(), "sample %s", f)
			Expect(out).To(ContainSubstring(strings.ToLower(u.GetKind())))

			stored := &unstructured.Unstructured{}
			stored.SetGroupVersionKind(u.GroupVersionKind())
			Expect(cluster.Client.Get(ctx, keyOf(u), stored)).To(Succeed())
		}
		Expect(kinds).To(HaveLen(5), "one sample for each of the five kinds")

		out, err := cluster.Kubectl(ctx, nil, "kustomize", dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(out, "\nkind: ")).To(Equal(len(files)), "config/samples/kustomization.yaml lists every sample")
	})
})
