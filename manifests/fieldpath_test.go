package manifests

import (
	"reflect"
	"testing"
)

func TestParseFieldPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]FieldPath{
		"spec.replicas":                          {"spec", "replicas"},
		"spec.template.spec.containers[0].image": {"spec", "template", "spec", "containers", 0, "image"},
		`metadata.annotations["example.com/x"]`:  {"metadata", "annotations", "example.com/x"},
		`metadata.labels["a]b"].x`:               {"metadata", "labels", "a]b", "x"},
		"a[1][2]":                                {"a", 1, 2},
	} {
		got, err := ParseFieldPath(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseFieldPath(%q) = %#v, %v; want %#v", in, got, err, want)
			continue
		}
		if back, _ := ParseFieldPath(got.String()); !reflect.DeepEqual(back, want) {
			t.Errorf("%q: String() = %q does not parse back", in, got.String())
		}
	}
	for _, in := range []string{"", ".a", "a.", "a..b", "a[", "a[x]", "a[-1]", `a["x`, "a.[0]", `a["x"]b`} {
		if p, err := ParseFieldPath(in); err == nil {
			t.Errorf("ParseFieldPath(%q) = %#v, want an error", in, p)
		}
	}
}
