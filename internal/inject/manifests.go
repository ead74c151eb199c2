package inject

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// templatePaths says where each kind that runs pods keeps its pod template ("" for a Pod, whose
// metadata and spec are the template's).
var templatePaths = map[string][]string{
	"Pod":                   {},
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// Result is what happened to one object of a manifest.
type Result struct {
	// Object is kind/name, e.g. deployment/web.
	Object string
	Decision
}

// NamespaceLookup finds what injection needs of a namespace by name ("" when the manifest does
// not say).
type NamespaceLookup func(name string) (Namespace, error)

// Manifests reads YAML or JSON documents (several, separated by ---, and List kinds) and writes
// them as YAML documents with every pod template meshed as the webhook would mesh the pods made
// from it. Objects that run no pods pass through unchanged. The pod templates' own annotations
// are read as the webhook reads the pods', so an opted-out template stays as it is.
func (c Config) Manifests(in io.Reader, out io.Writer, namespaces NamespaceLookup) ([]Result, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var results []Result
	first := true
	for doc := 1; ; doc++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return results, nil
			}
			return results, fmt.Errorf("document %d: %w", doc, err)
		}
		if obj == nil {
			continue // an empty document
		}
		r, err := c.object(obj, namespaces)
		results = append(results, r...)
		if err != nil {
			return results, fmt.Errorf("document %d: %w", doc, err)
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return results, err
		}
		if !first {
			b = append([]byte("---\n"), b...)
		}
		first = false
		if _, err := io.Copy(out, bytes.NewReader(b)); err != nil {
			return results, err
		}
	}
}

// object meshes obj, or each of its items when it is a List.
func (c Config) object(obj map[string]any, namespaces NamespaceLookup) ([]Result, error) {
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		var results []Result
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return results, fmt.Errorf("items[%d] is not an object", i)
			}
			r, err := c.object(m, namespaces)
			results = append(results, r...)
			if err != nil {
				return results, fmt.Errorf("items[%d]: %w", i, err)
			}
		}
		return results, nil
	}
	path, ok := templatePaths[kind]
	if !ok {
		return nil, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	nsName, _ := meta["namespace"].(string)
	result := Result{Object: strings.ToLower(kind) + "/" + name}

	holder := obj // the map whose "metadata" and "spec" are the pod template's
	for i, key := range path {
		next, ok := holder[key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s is missing", result.Object, strings.Join(path[:i+1], "."))
		}
		holder = next
	}
	tmpl := &corev1.PodTemplateSpec{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(
		map[string]any{"metadata": holder["metadata"], "spec": holder["spec"]}, tmpl); err != nil {
		return nil, fmt.Errorf("%s: reading its pod template: %w", result.Object, err)
	}
	ns, err := namespaces(nsName)
	if err != nil {
		return nil, err
	}
	if result.Decision, err = c.Inject(&tmpl.ObjectMeta, &tmpl.Spec, ns); err != nil {
		return nil, fmt.Errorf("%s: %w", result.Object, err)
	}
	if !result.Inject {
		return []Result{result}, nil
	}
	meshed, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tmpl)
	if err != nil {
		return nil, err
	}
	// The typed template writes an empty creationTimestamp that nobody asked for.
	if m, ok := meshed["metadata"].(map[string]any); ok {
		delete(m, "creationTimestamp")
	}
	holder["metadata"], holder["spec"] = meshed["metadata"], meshed["spec"]
	return []Result{result}, nil
}
