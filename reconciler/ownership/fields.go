package ownership

import (
	"encoding/json"
	"fmt"
	"sort"
)

// ChangedFields returns the paths of the leaves that differ between two
// JSON documents, sorted: "spec.replicas",
// "spec.template.spec.containers[0].image".
func ChangedFields(a, b []byte) []string {
	fa, fb := FieldValues(a), FieldValues(b)
	var out []string
	for k, v := range fa {
		if w, ok := fb[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// FieldValues flattens a JSON document into its leaves: path (as
// ChangedFields names it) -> the leaf's JSON text. An invalid document has
// no leaves.
func FieldValues(doc []byte) map[string]string {
	var v any
	_ = json.Unmarshal(doc, &v)
	out := map[string]string{}
	flatten("", v, out)
	return out
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[prefix] = "{}"
		}
		for k, x := range t {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
	case []any:
		if len(t) == 0 {
			out[prefix] = "[]"
		}
		for i, x := range t {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	default:
		b, _ := json.Marshal(t)
		out[prefix] = string(b)
	}
}
