package kubetest

import (
	"errors"
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// DecodeAll decodes the YAML (or JSON) documents of out, a manifests
// output, skipping empty ones; a document that does not decode fails t.
func DecodeAll(t testing.TB, out string) []*unstructured.Unstructured {
	t.Helper()
	var docs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if u.Object != nil {
			docs = append(docs, &u)
		}
	}
}
