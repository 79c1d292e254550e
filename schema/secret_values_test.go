package schema

import (
	"strings"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

// A Secret's value never shows in an error: they reach the audit stream,
// events and CI logs.
func TestSecretValuesNotInErrors(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
	for _, tc := range []struct {
		file, doc, want string
	}{
		{"s.yaml", head + "stringData:\n  password: 987654321\n", "s.yaml:5:3: stringData.password: invalid value (mismatched types int and string)"},
		{"s.yaml", head + "data:\n  password: true\n", "data.password: invalid value (mismatched types bool and string)"},
		{"s.yaml", head + "stringData:\n  password: [hunter2-in-a-list]\n", "stringData.password: invalid value (mismatched types list and string)"},
		{"s.yaml", head + "stringData:\n  password: {x: hunter2-in-a-map}\n", "stringData.password: invalid value"},
		{"s.yaml", head + "stringData: hunter2-whole\n", "stringData: invalid value"},
		{"s.yaml", head + "data:\n  \"a.b\": 987654321\n", `data["a.b"]: invalid value`},
		{"s.json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"stringData":{"password":987654321}}`, "stringData.password: invalid value"},
		{"s.cue", "db: {apiVersion: \"v1\", kind: \"Secret\", metadata: name: \"db\", stringData: password: 987654321}\n", "stringData.password: invalid value"},
		// Messages that hold no value are kept.
		{"s.yaml", head + "stringData:\n  'bad key!': hunter2-key\n", `stringData["bad key!"]: invalid key`},
		{"s.yaml", head + "data:\n  password: 'hunter2 not base64'\n", `data.password: value of key "password" is not valid base64`},
	} {
		_, err := Load([]manifests.File{{Path: tc.file, Data: []byte(tc.doc)}})
		if err == nil {
			t.Errorf("%s: loaded", tc.doc)
			continue
		}
		msg := err.Error()
		for _, v := range []string{"987654321", "hunter2", "true "} {
			if strings.Contains(msg, v) {
				t.Errorf("%q: the error quotes the value: %s", tc.doc, msg)
			}
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q, want %q", tc.doc, msg, tc.want)
		}
	}
	// Other kinds keep CUE's message, value and all.
	_, err := Load([]manifests.File{{Path: "c.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: 987654321\n")}})
	if err == nil || !strings.Contains(err.Error(), "987654321") {
		t.Errorf("a ConfigMap's error lost its detail: %v", err)
	}
}
