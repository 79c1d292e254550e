package writeback

import (
	"errors"
	"strings"
	"testing"

	yaml "gopkg.in/yaml.v3"
)

const webFile = `# the shop's front end
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  a: b
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep this name
spec:
  replicas: 3 # three is plenty
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: img:2 # the new one
  # rollout settings
  minReadySeconds: 5
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers: [{name: main, image: img:1}]
`

var (
	web = objectRef{Kind: "Deployment", Namespace: "default", Name: "web"}
	api = objectRef{Kind: "Deployment", Namespace: "default", Name: "api"}
)

func edit(t *testing.T, file string, ref objectRef, e editFunc) string {
	t.Helper()
	out, err := editFile("apps/web.yaml", []byte(file), ref, e)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// wantEdit edits file and wants it back with old replaced by new, the
// rest as it was.
func wantEdit(t *testing.T, file string, ref objectRef, e editFunc, old, new string) {
	t.Helper()
	if !strings.Contains(file, old) {
		t.Fatalf("%q is not in the file", old)
	}
	if got, want := edit(t, file, ref, e), strings.Replace(file, old, new, 1); got != want {
		t.Errorf("%s: got\n%s\nwant\n%s", ref, got, want)
	}
}

func scaleTo(n int32) editFunc {
	return func(doc *yaml.Node) error { return setReplicas(doc, n) }
}

func replaceWith(tmpl string) editFunc {
	return func(doc *yaml.Node) error {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tmpl), &n); err != nil {
			return err
		}
		return replaceTemplate(doc, n.Content[0])
	}
}

func TestSetReplicasKeepsTheRest(t *testing.T) {
	wantEdit(t, webFile, web, scaleTo(12), "replicas: 3 # three", "replicas: 12 # three")
	// Absent: one line added under spec, indented as its fields.
	wantEdit(t, webFile, api, scaleTo(0), "  name: api\nspec:\n", "  name: api\nspec:\n  replicas: 0\n")
}

func TestReplaceTemplateKeepsTheRest(t *testing.T) {
	replace := replaceWith("metadata:\n  labels: {app: web}\nspec:\n  containers:\n    - name: main\n      image: img:1 # the old one\n")
	wantEdit(t, webFile, web, replace, "          image: img:2 # the new one\n", "          image: img:1 # the old one\n")
	// The last field of the last document.
	got := edit(t, webFile, api, replace)
	if !strings.HasSuffix(got, "  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: main\n          image: img:1 # the old one\n") ||
		!strings.HasPrefix(got, webFile[:strings.Index(webFile, "  name: api")]) {
		t.Errorf("got\n%s", got)
	}
}

// TestEditKeepsComments: comments around, beside and under the edited
// field, and in the rest of the document, stay where they were.
func TestEditKeepsComments(t *testing.T) {
	const file = `# head of the document
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  # how many
  replicas: 3     # beside the value

  # after a blank line, about the selector
  selector:
    matchLabels:
      app: web # the label
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: main
          image: img:2
          # under the container
# the end
`
	wantEdit(t, file, web, scaleTo(5), "  replicas: 3     # beside the value\n", "  replicas: 5 # beside the value\n")
	// Replicas added under spec: the comment before spec's first field
	// stays with it, the rest untouched.
	noReplicas := strings.Replace(file, "  # how many\n  replicas: 3     # beside the value\n\n", "", 1)
	wantEdit(t, noReplicas, web, scaleTo(1), "about the selector\n", "about the selector\n  replicas: 1\n")
	// A template whose one image differs: only that line changes; the
	// comments of the fields kept are kept.
	wantEdit(t, file, web, replaceWith("metadata:\n  labels:\n    app: web\nspec:\n  containers:\n    - name: main\n      image: img:1\n"),
		"          image: img:2\n          # under the container\n", "          image: img:1\n")
}

// TestEditFlowAndBlockStyle: a flow mapping is written again in flow
// style, on its line; block mappings around it keep their lines.
func TestEditFlowAndBlockStyle(t *testing.T) {
	const flow = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec: {replicas: 1, selector: {matchLabels: {app: db}}, template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: "pg:16"}]}}}
`
	db := objectRef{Kind: "StatefulSet", Namespace: "data", Name: "db"}
	wantEdit(t, flow, db, scaleTo(3), "{replicas: 1,", "{replicas: 3,")
	refused := func(file string, e editFunc, want string) {
		t.Helper()
		if _, err := editFile("apps/web.yaml", []byte(file), objectRef{Kind: "StatefulSet", Name: "db"}, e); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error with %q", err, want)
		}
	}
	// Without replicas, a flow spec is refused as before: the user adds
	// the field.
	refused(strings.Replace(flow, "replicas: 1, ", "", 1), scaleTo(3), "apps/web.yaml: spec is written in flow style: add replicas by hand")
	// A flow template is refused by undo.
	refused(flow, replaceWith("{}"), "apps/web.yaml: spec.template is missing or written in flow style")
	// A quoted count is not a plain number.
	refused(strings.Replace(flow, "replicas: 1", `replicas: "1"`, 1), scaleTo(4), "apps/web.yaml: spec.replicas is not a plain number")
	// Block style with four spaces of indentation and a block sequence
	// kept as it is.
	const four = "kind: Deployment\nmetadata:\n    name: web\nspec:\n    selector:\n        matchLabels:\n            app: web\n    template:\n        spec:\n            containers:\n            -   name: main\n                image: img:1\n"
	wantEdit(t, four, web, scaleTo(2), "spec:\n    selector:", "spec:\n    replicas: 2\n    selector:")
}

// TestEditMultiDocument: only the declaring document changes, whatever
// the other documents hold, separators with comments included.
func TestEditMultiDocument(t *testing.T) {
	const file = "kind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 1\n" +
		"--- # the same name, another namespace\n" +
		"kind: Deployment\nmetadata:\n  name: web\nspec:\n    replicas:   1   # odd spacing\n" +
		"---\n\n# nothing but a comment\n" +
		"---\n" +
		"not: [valid\n" +
		"---\n" +
		"kind: Deployment\nmetadata: {name: web, namespace: other}\nspec:\n  replicas: 1\n"
	wantEdit(t, file, web, scaleTo(7), "    replicas:   1   # odd spacing\n", "    replicas: 7 # odd spacing\n")
	other := objectRef{Kind: "Deployment", Namespace: "other", Name: "web"}
	if got, want := edit(t, file, other, scaleTo(7)), file[:strings.LastIndex(file, "replicas: 1")]+"replicas: 7\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A document marker with content does not split the file, yet ends
	// the document.
	const tagged = "kind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n--- !!map\nkind: ConfigMap\n...\n"
	wantEdit(t, tagged, web, scaleTo(2), "  replicas: 1\n", "  replicas: 2\n")
	// Windows line ends are kept.
	crlf := strings.ReplaceAll(webFile, "\n", "\r\n")
	wantEdit(t, crlf, api, scaleTo(2), "spec:\r\n  selector:\r\n    matchLabels: {app: api}", "spec:\r\n  replicas: 2\r\n  selector:\r\n    matchLabels: {app: api}")
	wantEdit(t, crlf, web, scaleTo(4), "replicas: 3 # three", "replicas: 4 # three")
}

// TestEditDocumentNotFound: the error names the file and the object.
func TestEditDocumentNotFound(t *testing.T) {
	for _, ref := range []objectRef{
		{Kind: "Deployment", Namespace: "shop", Name: "web"},
		{Kind: "StatefulSet", Namespace: "default", Name: "web"},
		{Kind: "Deployment", Namespace: "default", Name: "nobody"},
	} {
		_, err := editFile("apps/web.yaml", []byte(webFile), ref, scaleTo(1))
		if !errors.Is(err, errNoDocument) {
			t.Fatalf("%v: got %v, want errNoDocument", ref, err)
		}
		if want := "apps/web.yaml declares no such object: " + ref.Kind + " " + ref.Namespace + "/" + ref.Name; err.Error() != want {
			t.Errorf("got %q, want %q", err, want)
		}
	}
}

// TestEditRemovesAndReorders: an undo to a template with fewer fields
// removes their lines (with the comments just above them) and adds the
// new ones; a template with its fields in another order is written again
// whole; at the top of the document, a reorder is refused.
func TestEditRemovesAndReorders(t *testing.T) {
	const file = `kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels:
        app: web
    spec:
      # a comment of restartPolicy
      restartPolicy: Always # always
      containers:
        - name: main
          image: img:2
  minReadySeconds: 5
`
	wantEdit(t, file, web, replaceWith("metadata:\n  labels:\n    app: web\nspec:\n  containers:\n    - name: main\n      image: img:2\n  terminationGracePeriodSeconds: 5\n"),
		"      # a comment of restartPolicy\n      restartPolicy: Always # always\n      containers:\n        - name: main\n          image: img:2\n",
		"      containers:\n        - name: main\n          image: img:2\n      terminationGracePeriodSeconds: 5\n")
	wantEdit(t, file, web, replaceWith("spec:\n  containers:\n    - name: main\n      image: img:1\nmetadata:\n  labels:\n    app: web\n"),
		"  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      # a comment of restartPolicy\n      restartPolicy: Always # always\n      containers:\n        - name: main\n          image: img:2\n",
		"  template:\n    spec:\n      containers:\n        - name: main\n          image: img:1\n    metadata:\n      labels:\n        app: web\n")

	reorder := func(doc *yaml.Node) error {
		doc.Content[0], doc.Content[1], doc.Content[2], doc.Content[3] = doc.Content[2], doc.Content[3], doc.Content[0], doc.Content[1]
		return nil
	}
	if _, err := editFile("apps/web.yaml", []byte(file), web, reorder); err == nil || err.Error() != "apps/web.yaml: fields were reordered or repeated" {
		t.Errorf("got %v, want a refusal", err)
	}
}
