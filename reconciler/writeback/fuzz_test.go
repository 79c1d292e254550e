package writeback

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"

	yaml "gopkg.in/yaml.v3"
)

// fuzzEdit edits the document of data declaring ref, named fuzz.yaml:
// ok is false when the edit is refused, and the refusal must name the
// file; else the file out must differ only in that document, before and
// after the edit.
func fuzzEdit(t *testing.T, data []byte, ref objectRef, e editFunc) (out []byte, before, after document, ok bool) {
	t.Helper()
	out, err := editFile("fuzz.yaml", data, ref, e)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("the error does not name the file: %v", err)
		}
		return nil, document{}, document{}, false
	}
	before, _ = findDocument(data, ref)
	if after, ok = findDocument(out, ref); !ok {
		t.Fatalf("the edited file declares no %s:\n%s", ref, out)
	}
	if after.start != before.start || !bytes.Equal(out[:after.start], data[:before.start]) || !bytes.Equal(out[after.end:], data[before.end:]) {
		t.Fatalf("the other documents changed:\n%q\n%q", data, out)
	}
	return out, before, after, true
}

// FuzzSetReplicas edits spec.replicas of Deployment default/web in a
// fuzzed file. It must not panic; a refusal names the file; an edit
// changes only the declaring document, which then says what it said
// before but for spec.replicas, and doing it again changes nothing.
func FuzzSetReplicas(f *testing.F) {
	for _, s := range []string{
		webFile,
		strings.ReplaceAll(webFile, "\n", "\r\n"),
		strings.Replace(webFile, "replicas: 3 # three is plenty\n", "", 1),
		"kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1, selector: {matchLabels: {app: web}}}\n",
		"kind: Deployment\nmetadata: {name: web}\nspec: {selector: {}}\n",
		"kind: Deployment\nmetadata:\n    name: web\nspec:\n    # count\n    replicas:\n        2\n\n    # template\n    template:\n        spec:\n            containers:\n            -   name: main\n...\n",
		"---\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: &n 2\n  other: *n\n--- # next\nkind: Deployment\nmetadata: {name: web, namespace: x}\nspec: {replicas: 1}\n",
		"kind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: \"3\"\n",
		"kind: Deployment\nmetadata:\n  name: web\nspec:\n  template: |\n    text\n  # c\n  replicas: 1",
		"kind: Deployment\nmetadata:\n  name: web\nspec: []\n",
		"kind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n--- !!map\nkind: ConfigMap\n...\n# after\n",
	} {
		f.Add([]byte(s), int32(4))
	}
	f.Add([]byte(webFile), int32(0))
	ref := objectRef{Kind: "Deployment", Namespace: "default", Name: "web"}
	f.Fuzz(func(t *testing.T, data []byte, replicas int32) {
		if replicas < 0 {
			replicas = -(replicas + 1)
		}
		out, before, after, ok := fuzzEdit(t, data, ref, scaleTo(replicas))
		if !ok {
			return
		}
		if got := mapValue(mapValue(after.root, "spec"), "replicas"); got == nil || got.Value != strconv.Itoa(int(replicas)) || got.Tag != "!!int" {
			t.Fatalf("spec.replicas is %+v, want %d:\n%s", got, replicas, out)
		}
		var was, now map[string]any
		// An anchored count changes its aliases too: not compared.
		anchored := mapValue(mapValue(before.root, "spec"), "replicas")
		if (anchored == nil || anchored.Anchor == "") && yaml.Unmarshal(data[before.start:before.end], &was) == nil {
			if err := yaml.Unmarshal(out[after.start:after.end], &now); err != nil {
				t.Fatalf("the edited document does not decode: %v\n%s", err, out)
			}
			switch spec := was["spec"].(type) {
			case map[string]any:
				spec["replicas"] = int(replicas)
			case map[any]any:
				spec["replicas"] = int(replicas)
			}
			if !reflect.DeepEqual(was, now) {
				t.Fatalf("the document says more than the edit:\n%v\n%v\n%s", was, now, out)
			}
		}
		again, err := editFile("fuzz.yaml", out, ref, scaleTo(replicas))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second edit changed the file (%v):\n%q\n%q", err, out, again)
		}
	})
}

// FuzzReplaceTemplate swaps spec.template of Deployment default/web in a
// fuzzed file for a fuzzed template, as rollout undo does. It must not
// panic; an edit changes only the declaring document, whose template is
// then the new one and the rest as before, and doing it again changes
// nothing.
func FuzzReplaceTemplate(f *testing.F) {
	tmpl := "metadata:\n  labels: {app: web}\nspec:\n  containers:\n    - name: main\n      image: img:1 # the old one\n"
	f.Add([]byte(webFile), []byte(tmpl))
	f.Add([]byte(webFile), []byte("spec:\n  containers: [{name: main, image: img:1}]\nmetadata: {labels: {app: web}}\n"))
	f.Add([]byte(webFile), []byte("metadata:\n  labels: {app: web}\n"))
	f.Add([]byte(strings.ReplaceAll(webFile, "\n", "\r\n")), []byte(tmpl))
	f.Add([]byte("kind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      # labels\n      labels:\n        app: web\n\n    spec:\n      restartPolicy: Always\n      containers:\n      - name: main\n        image: img:2\n...\n"), []byte(tmpl))
	ref := objectRef{Kind: "Deployment", Namespace: "default", Name: "web"}
	f.Fuzz(func(t *testing.T, data, tmplData []byte) {
		var n yaml.Node
		if yaml.Unmarshal(tmplData, &n) != nil || len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
			return // a template is a mapping
		}
		tmpl := n.Content[0]
		replace := func(doc *yaml.Node) error { return replaceTemplate(doc, tmpl) }
		out, before, after, ok := fuzzEdit(t, data, ref, replace)
		if !ok {
			return
		}
		if got := mapValue(mapValue(after.root, "spec"), "template"); got == nil || !sameNode(got, tmpl, false) {
			t.Fatalf("spec.template is not the new one:\n%s", out)
		}
		// The rest of the document is as it was.
		_ = replaceTemplate(before.root, tmpl)
		if !sameNode(after.root, before.root, false) {
			t.Fatalf("the document says more than the edit:\n%s", out)
		}
		if tmpl.Style&yaml.FlowStyle != 0 || len(tmpl.Content) == 0 {
			return // written in flow style, which undo does not edit again
		}
		again, err := editFile("fuzz.yaml", out, ref, replace)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second edit changed the file (%v):\n%q\n%q", err, out, again)
		}
	})
}
