package manifests

import "testing"

func TestLeadingTypeMeta(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in       string
		ok       bool
		api, kin string
	}{
		{`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{}}`, true, "apps/v1", "Deployment"},
		{`{"kind":"Pod","metadata":{}}`, true, "", "Pod"},
		// Not at the very start, or not in Capstan's order: parsed in full.
		{`{"metadata":{"ownerReferences":[{"kind":"ReplicaSet"}]},"kind":"Pod"}`, false, "", ""},
		{` {"kind":"Pod"}`, false, "", ""},
		{`{"apiVersion":"v1","metadata":{},"kind":"Pod"}`, false, "", ""},
		{`{"kind":"P\"od"}`, false, "", ""},
		{`{"apiVersion":"v1`, false, "", ""},
	}
	for _, c := range cases {
		tm, ok := leadingTypeMeta([]byte(c.in))
		if ok != c.ok || (ok && (tm.APIVersion != c.api || tm.Kind != c.kin)) {
			t.Errorf("leadingTypeMeta(%s) = %+v, %v; want %s/%s, %v", c.in, tm, ok, c.api, c.kin, c.ok)
		}
	}
	// Decode agrees whichever way the kind is found.
	for _, in := range []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}`, `{"metadata":{"name":"a"},"kind":"Pod","apiVersion":"v1"}`} {
		obj, err := Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := obj.(*Pod); !ok || p.Name != "a" || p.Kind != "Pod" {
			t.Errorf("Decode(%s) = %#v", in, obj)
		}
	}
}
