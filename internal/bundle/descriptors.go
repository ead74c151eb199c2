package bundle

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// relatedImages adds the default images of a CRD's stored schema to into (image to name).
func relatedImages(obj *unstructured.Unstructured, into map[string]string) error {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := convert(obj, crd); err != nil {
		return err
	}
	for _, v := range crd.Spec.Versions {
		if v.Storage && v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
			defaultImages(*v.Schema.OpenAPIV3Schema, into)
		}
	}
	return nil
}

// conditionsDescriptor tells OLM's consoles to show a status field as Kubernetes conditions.
const conditionsDescriptor = "urn:alm:descriptor:io.kubernetes.conditions"

// ownedCRD describes a CRD for the CSV: its stored version, and a descriptor for each top-level
// field of spec and status, with the field's own documentation (from the Go types' comments), so
// the descriptors follow the API without a second copy to keep in step.
func ownedCRD(obj *unstructured.Unstructured) (operatorsv1alpha1.CRDDescription, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := convert(obj, crd); err != nil {
		return operatorsv1alpha1.CRDDescription{}, err
	}
	var stored *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Storage {
			stored = &crd.Spec.Versions[i]
		}
	}
	if stored == nil || stored.Schema == nil || stored.Schema.OpenAPIV3Schema == nil {
		return operatorsv1alpha1.CRDDescription{}, fmt.Errorf("CRD %s has no stored version with a schema", crd.Name)
	}
	schema := stored.Schema.OpenAPIV3Schema
	d := operatorsv1alpha1.CRDDescription{
		Name:        crd.Name,
		Version:     stored.Name,
		Kind:        crd.Spec.Names.Kind,
		DisplayName: words(crd.Spec.Names.Kind),
		Description: firstSentence(schema.Description),
	}
	if d.Description == "" {
		return d, fmt.Errorf("CRD %s has no description: document the %s type", crd.Name, d.Kind)
	}
	for _, f := range fields(schema.Properties["spec"]) {
		d.SpecDescriptors = append(d.SpecDescriptors, operatorsv1alpha1.SpecDescriptor{Path: f.path, DisplayName: f.name, Description: f.description})
	}
	for _, f := range fields(schema.Properties["status"]) {
		sd := operatorsv1alpha1.StatusDescriptor{Path: f.path, DisplayName: f.name, Description: f.description}
		if f.path == "conditions" {
			sd.XDescriptors = []string{conditionsDescriptor}
		}
		d.StatusDescriptors = append(d.StatusDescriptors, sd)
	}
	return d, nil
}

// defaultImages are the defaults of the image fields (named image or ending in Image) anywhere in
// a schema, e.g. MeshConfig's spec.proxy.image: images the operator puts into pods, which a
// disconnected install must mirror, so the CSV lists them as related images.
func defaultImages(s apiextensionsv1.JSONSchemaProps, into map[string]string) {
	for prop, p := range s.Properties {
		if (prop == "image" || strings.HasSuffix(prop, "Image")) && p.Type == "string" && p.Default != nil {
			if image := strings.Trim(string(p.Default.Raw), `"`); image != "" {
				into[image] = imageName(image)
			}
		}
		defaultImages(p, into)
	}
	if s.Items != nil && s.Items.Schema != nil {
		defaultImages(*s.Items.Schema, into)
	}
}

// imageName is an image's last path element without its tag: ghcr.io/x/skein-proxy:v1 is skein-proxy.
func imageName(image string) string {
	name := image[strings.LastIndex(image, "/")+1:]
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	return name
}

type field struct{ path, name, description string }

// fields are the properties of an object schema, sorted by name.
func fields(s apiextensionsv1.JSONSchemaProps) []field {
	var out []field
	for name, p := range s.Properties {
		out = append(out, field{path: name, name: words(name), description: firstSentence(p.Description)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// words turns an identifier into words for display: "workloadIPs" is "Workload IPs", "MeshConfig"
// is "Mesh Config".
func words(id string) string {
	var b strings.Builder
	r := []rune(id)
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])) {
			b.WriteRune(' ')
		}
		if i == 0 {
			c = unicode.ToUpper(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// firstSentence is the first sentence of a description, on one line: enough for a form's hint.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
