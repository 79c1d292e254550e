package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/manifests"
)

func require_NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
}

func readFiles(t testing.TB, paths ...string) []manifests.File {
	t.Helper()
	var files []manifests.File
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require_NoError(t, err)
		files = append(files, manifests.File{Path: p, Data: data})
	}
	return files
}

func TestLoadValid(t *testing.T) {
	objs, err := LoadPaths("testdata/valid")
	require_NoError(t, err)
	var got []string
	for _, o := range objs {
		got = append(got, fmt.Sprintf("%T %s", o, manifests.KeyOf(o)))
	}
	want := []string{
		"*manifests.Namespace Namespace._.shop",
		"*manifests.ConfigMap ConfigMap.shop.shop-config",
		"*manifests.Secret Secret.shop.shop-secret",
		"*manifests.Pod Pod.shop.debug",
		"*manifests.Deployment Deployment.default.web",
		"*manifests.ConfigMap ConfigMap.default.from-json",
		"*manifests.Deployment Deployment.shop.api",
		"*manifests.ReplicaSet ReplicaSet.shop.cache",
		"*manifests.Deployment Deployment.shop.mailer",
		"*manifests.Deployment Deployment.shop.billing",
		"*manifests.ConfigMap ConfigMap.shop.workers",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("objects:\n got %q\nwant %q", got, want)
	}
	for _, o := range objs {
		if tm := o.GetTypeMeta(); tm.Kind == "" || tm.APIVersion == "" {
			t.Errorf("%s: TypeMeta not set: %+v", manifests.KeyOf(o), tm)
		}
	}
	secret := objs[2].(*manifests.Secret)
	if string(secret.Data["password"]) != "hunter2" || string(secret.Data["token"]) != "s3cr3t" || secret.StringData != nil {
		t.Errorf("secret data: got %q, stringData %q", secret.Data, secret.StringData)
	}
	if cm := objs[1].(*manifests.ConfigMap); string(cm.BinaryData["logo.png"]) != "\x89PNG\r\n\x1a\n" {
		t.Errorf("binaryData: got %q", cm.BinaryData["logo.png"])
	}
}

func TestDefaults(t *testing.T) {
	objs, err := LoadPaths("testdata/valid/deployment.yaml", "testdata/valid/app.yaml", "testdata/valid/list.json")
	require_NoError(t, err)
	byKey := map[string]manifests.Object{}
	for _, o := range objs {
		byKey[manifests.KeyOf(o)] = o
	}
	d := byKey["Deployment.default.web"].(*manifests.Deployment)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"namespace", d.Namespace, "default"},
		{"replicas", manifests.Int32(d.Spec.Replicas, -1), int32(1)},
		{"strategy type", d.Spec.Strategy.Type, "RollingUpdate"},
		{"maxSurge", *d.Spec.Strategy.RollingUpdate.MaxSurge, *manifests.FromString("25%")},
		{"maxUnavailable", *d.Spec.Strategy.RollingUpdate.MaxUnavailable, *manifests.FromString("25%")},
		{"revisionHistoryLimit", manifests.Int32(d.Spec.RevisionHistoryLimit, -1), int32(10)},
		{"progressDeadlineSeconds", manifests.Int32(d.Spec.ProgressDeadlineSeconds, -1), int32(600)},
		{"restartPolicy", pod.RestartPolicy, "Always"},
		{"terminationGracePeriodSeconds", *pod.TerminationGracePeriodSeconds, int64(30)},
		{"imagePullPolicy", c.ImagePullPolicy, "IfNotPresent"},
		{"protocol", c.Ports[0].Protocol, "TCP"},
		{"secret type", byKey["Secret.shop.shop-secret"].(*manifests.Secret).Type, "Opaque"},
		{"pod restartPolicy kept", byKey["Pod.shop.debug"].(*manifests.Pod).Spec.RestartPolicy, "Never"},
		{"namespace has no namespace", byKey["Namespace._.shop"].GetObjectMeta().Namespace, ""},
		{"Recreate has no rollingUpdate", byKey["Deployment.shop.api"].(*manifests.Deployment).Spec.Strategy.RollingUpdate, (*manifests.RollingUpdateDeployment)(nil)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

// want is one expected error: position, field and a part of the message.
type want struct {
	file      string
	line, col int
	field     string
	msg       string
}

func TestLoadInvalid(t *testing.T) {
	const dir = "testdata/invalid/"
	for _, tc := range []struct {
		files []string
		want  []want
	}{
		{[]string{"unknown-field.yaml"}, []want{
			{"unknown-field.yaml", 12, 7, "spec.template.spec.tolerations", `field "tolerations" is not allowed`},
			{"unknown-field.yaml", 16, 11, "spec.template.spec.containers[0].imagee", `field "imagee" is not allowed`},
		}},
		{[]string{"wrong-type.yaml"}, []want{
			{"wrong-type.yaml", 6, 3, "spec.replicas", `conflicting values "three" and int32`},
		}},
		{[]string{"bad-values.yaml"}, []want{
			{"bad-values.yaml", 4, 3, "metadata.name", `invalid value "Bad_Name" (want a DNS subdomain`},
			{"bad-values.yaml", 6, 3, "spec.restartPolicy", `invalid value "Sometimes" (want "Always" or "Never" or "OnFailure")`},
			{"bad-values.yaml", 11, 11, "spec.containers[0].ports[0].containerPort", "invalid value 70000 (out of bound <=65535)"},
			{"bad-values.yaml", 12, 11, "spec.containers[0].ports[0].protocol", `invalid value "HTTP" (want "SCTP" or "TCP" or "UDP")`},
			{"bad-values.yaml", 15, 11, "spec.containers[0].resources.limits.cpu", `invalid value "12 apples" (want a quantity`},
		}},
		{[]string{"selector.yaml"}, []want{
			{"selector.yaml", 6, 3, "spec.selector", "selector does not match the template's labels {app=api}"},
		}},
		{[]string{"status.yaml"}, []want{
			{"status.yaml", 5, 3, "metadata.uid", `field "uid" is set by Capstan`},
			{"status.yaml", 6, 1, "status", `field "status" is set by Capstan`},
		}},
		{[]string{"secret.yaml"}, []want{
			{"secret.yaml", 7, 3, "data.password", `value of key "password" is not valid base64`},
		}},
		{[]string{"syntax.yaml"}, []want{
			{"syntax.yaml", 5, 0, "", "syntax error: did not find expected ',' or ']'"},
		}},
		{[]string{"kinds.yaml"}, []want{
			{"kinds.yaml", 2, 1, "kind", `unknown kind "Service"`},
			{"kinds.yaml", 6, 1, "apiVersion", `apiVersion "v1" is wrong for kind Deployment (want apps/v1)`},
		}},
		{[]string{"duplicate/a.yaml", "duplicate/b.json"}, []want{
			{"duplicate/b.json", 4, 41, "metadata.name", `duplicate ConfigMap "default/settings": also declared at testdata/invalid/duplicate/a.yaml:4:3`},
		}},
		{[]string{"invalid.cue"}, []want{
			{"invalid.cue", 5, 8, "data.size", "conflicting values 3 and string"},
		}},
		// Every problem of every file is reported, in file order.
		{[]string{"wrong-type.yaml", "secret.yaml", "../valid/deployment.yaml"}, []want{
			{"wrong-type.yaml", 6, 3, "spec.replicas", "conflicting values"},
			{"secret.yaml", 7, 3, "data.password", "base64"},
		}},
	} {
		t.Run(strings.Join(tc.files, "+"), func(t *testing.T) {
			var paths []string
			for _, f := range tc.files {
				paths = append(paths, dir+f)
			}
			objs, err := Load(readFiles(t, paths...))
			if objs != nil {
				t.Errorf("got %d objects, want none", len(objs))
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got error %v (%T), want an *ErrorList", err, err)
			}
			if len(list.Errors) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(list.Errors), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(list.Errors) {
					break
				}
				g := list.Errors[i]
				if g.File != dir+w.file || g.Line != w.line || g.Col != w.col || g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d:\n got %s\nwant %s%s:%d:%d: %s: ...%s...", i, g, dir, w.file, w.line, w.col, w.field, w.msg)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Col: 5, Field: "spec.replicas", Msg: "bad"}, "a.yaml:3:5: spec.replicas: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "syntax error: x"}, "a.yaml:3: syntax error: x"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := formatPath([]any{"metadata", "labels", "app.kubernetes.io/name"}); got != `metadata.labels["app.kubernetes.io/name"]` {
		t.Errorf("formatPath: got %s", got)
	}
}

func TestMoreInvalid(t *testing.T) {
	const base = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx\n"
	for _, tc := range []struct {
		name, yaml, field, msg string
	}{
		{"template restartPolicy", base + "      restartPolicy: Never\n", "spec.template.spec.restartPolicy", `conflicting values "Always" and "Never"`},
		{"maxSurge", base + "  strategy:\n    rollingUpdate: {maxSurge: 25}\n", "", ""},
		{"bad percent", base + "  strategy:\n    rollingUpdate: {maxSurge: two}\n", "spec.strategy.rollingUpdate.maxSurge", `"two"`},
		{"recreate with rollingUpdate", base + "  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n", "spec.strategy.rollingUpdate", "Recreate"},
		{"bad label key", strings.Replace(base, "name: web\nspec", "name: web\n  labels: {\"bad key\": x}\nspec", 1), `metadata.labels["bad key"]`, "invalid key"},
		{"bad label value", strings.Replace(base, "name: web\nspec", "name: web\n  labels: {k: \"-x\"}\nspec", 1), "metadata.labels.k", "label value"},
		{"negative replicas", base + "  replicas: -1\n", "spec.replicas", ">=0"},
		{"duplicate container", base + "        - name: web\n          image: nginx\n", "spec.template.spec.containers[1].name", "duplicate container name"},
		{"request over limit", base + "          resources: {requests: {cpu: 2, memory: 1e3}, limits: {cpu: 500m}}\n", "spec.template.spec.containers[0].resources.requests.cpu", "more than the limit"},
		{"unsupported resource", base + "          resources: {limits: {nvidia.com/gpu: 1}}\n", `spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]`, "not allowed"},
		{"missing name", strings.Replace(base, "  name: web\n", "  labels: {a: b}\n", 1), "metadata.name", "required"},
		{"no containers", strings.Replace(base, "        - name: web\n          image: nginx\n", "", 1) + "\n", "spec.template.spec.containers", ""},
		{"empty containers", strings.Replace(base, "      containers:\n        - name: web\n          image: nginx\n", "      containers: []\n", 1), "spec.template.spec.containers", "at least one"},
		{"bad pull policy", base + "          imagePullPolicy: Sometimes\n", "spec.template.spec.containers[0].imagePullPolicy", `want "Always" or "IfNotPresent" or "Never"`},
		{"namespace on Namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "metadata.namespace", "cluster-scoped"},
		{"Node from Git", "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n", "kind", "written by Capstan"},
		{"missing kind", "apiVersion: v1\nmetadata: {name: a}\n", "", "missing kind"},
		{"not an object", "- a\n- b\n", "", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]manifests.File{{Path: "x.yaml", Data: []byte(tc.yaml)}})
			if tc.msg == "" && tc.field == "" {
				require_NoError(t, err)
				return
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got %v, want an *ErrorList", err)
			}
			for _, e := range list.Errors {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) && e.Line > 0 {
					return
				}
			}
			t.Errorf("got:\n%v\nwant an error at %s containing %q", err, tc.field, tc.msg)
		})
	}
}

func TestEmptyAndIgnored(t *testing.T) {
	objs, err := Load([]manifests.File{
		{Path: "empty.yaml"}, {Path: "blank.yaml", Data: []byte("---\n# nothing\n---\n")},
		{Path: "empty.json", Data: []byte(" \n")}, {Path: "README.md", Data: []byte("# not a manifest: {")},
	})
	require_NoError(t, err)
	if len(objs) != 0 {
		t.Fatalf("got %d objects, want none", len(objs))
	}
}

// TestMaximalRoundTrip loads a Deployment that sets every field the schema
// allows, and checks that every one of them reaches the Go object: a field
// the schema accepts but the Go types lack would be lost on the way.
func TestMaximalRoundTrip(t *testing.T) {
	files := readFiles(t, "testdata/maximal.yaml")
	objs, err := Load(files)
	require_NoError(t, err)
	out, err := json.Marshal(objs[0])
	require_NoError(t, err)
	var in, got map[string]any
	require_NoError(t, yaml.Unmarshal(files[0].Data, &in))
	require_NoError(t, json.Unmarshal(out, &got))
	if missing := notIn(in, got, ""); len(missing) > 0 {
		t.Errorf("fields lost between the schema and the Go types: %v\ngot %s", missing, out)
	}
	// The re-marshalled object, without what Go adds, loads to the same object.
	delete(got, "status")
	tmpl := got["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
	delete(tmpl, "name")
	again, err := json.Marshal(got)
	require_NoError(t, err)
	objs2, err := Load([]manifests.File{{Path: "again.json", Data: again}})
	require_NoError(t, err)
	if !reflect.DeepEqual(objs, objs2) {
		t.Errorf("round trip changed the object:\n%+v\n%+v", objs[0], objs2[0])
	}
}

// notIn lists the paths of a that b lacks or holds with another value.
func notIn(a, b any, path string) []string {
	switch a := a.(type) {
	case map[string]any:
		bm, _ := b.(map[string]any)
		var missing []string
		for k, v := range a {
			missing = append(missing, notIn(v, bm[k], path+"."+k)...)
		}
		return missing
	case []any:
		bl, _ := b.([]any)
		if len(bl) != len(a) {
			return []string{path}
		}
		var missing []string
		for i := range a {
			missing = append(missing, notIn(a[i], bl[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return missing
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return []string{path}
		}
		return nil
	}
}

// TestShapesMatchGoTypes checks that the definitions list exactly the json
// fields of the Go types, except those Git may not set. A Go map may be a
// struct with fixed fields in the schema (a ResourceList has cpu and memory).
func TestShapesMatchGoTypes(t *testing.T) {
	mustCompile()
	// Fields of the Go types the schema leaves out on purpose.
	omitted := map[string]bool{
		"status": true, "metadata.uid": true, "metadata.generation": true, "metadata.resourceVersion": true,
		"metadata.creationTimestamp": true, "metadata.deletionTimestamp": true, "metadata.ownerReferences": true,
		"spec.template.metadata.name": true, "spec.template.metadata.namespace": true,
		"spec.template.metadata.uid": true, "spec.template.metadata.generation": true, "spec.template.metadata.resourceVersion": true,
		"spec.template.metadata.creationTimestamp": true, "spec.template.metadata.deletionTimestamp": true, "spec.template.metadata.ownerReferences": true,
		"Namespace:metadata.namespace": true,
	}
	for _, kind := range gitKinds {
		info, _ := manifests.LookupKind(kind)
		goFields := map[string]bool{}
		goPaths(reflect.TypeOf(info.New()).Elem(), "", goFields)
		cueFields := map[string]bool{}
		shapePaths(shapes[kind], "", cueFields)
		for p := range cueFields {
			parent := p[:max(strings.LastIndexByte(p, '.'), 0)]
			if _, ok := goFields[p]; !ok && !goFields[parent] {
				t.Errorf("%s: the schema has %s, the Go type does not", kind, p)
			}
		}
		for p := range goFields {
			if !cueFields[p] && !omitted[p] && !omitted[kind+":"+p] && !strings.HasPrefix(p, "status.") && !strings.Contains(p, "ownerReferences.") {
				t.Errorf("%s: the Go type has %s, the schema does not", kind, p)
			}
		}
	}
}

func shapePaths(s *shape, prefix string, out map[string]bool) {
	for name, f := range s.fields {
		p := strings.TrimPrefix(prefix+"."+name, ".")
		out[p] = true
		for f.elem != nil {
			f = f.elem
		}
		shapePaths(f, p, out)
	}
}

var (
	timeType     = reflect.TypeOf(manifests.Time{})
	intOrStrType = reflect.TypeOf(manifests.IntOrString{})
)

func goPaths(t reflect.Type, prefix string, out map[string]bool) { // path -> is a map
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || t == intOrStrType {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			goPaths(f.Type, prefix, out) // TypeMeta is inline
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		p := strings.TrimPrefix(prefix+"."+name, ".")
		out[p] = f.Type.Kind() == reflect.Map
		goPaths(f.Type, p, out)
	}
}

func TestPatternsAreInSchema(t *testing.T) {
	src, err := cueFiles.ReadFile("cue/kinds.cue")
	require_NoError(t, err)
	for _, p := range patterns {
		if !strings.Contains(string(src), strconv.Quote(p.re)) {
			t.Errorf("pattern %s is not in kinds.cue", p.re)
		}
	}
}

func TestLoadConcurrent(t *testing.T) {
	files := readFiles(t, "testdata/valid/deployment.yaml", "testdata/valid/app.yaml", "testdata/valid/replicaset.yml", "testdata/valid/workers.cue")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			objs, err := Load(files)
			if err != nil || len(objs) != 9 {
				t.Errorf("got %d objects, %v", len(objs), err)
			}
		})
	}
	wg.Wait()
}

func deploymentYAML(i int) []byte {
	return fmt.Appendf(nil, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%d
  namespace: team-%d
  labels: {app: app-%d}
spec:
  replicas: 3
  selector:
    matchLabels: {app: app-%d}
  template:
    metadata:
      labels: {app: app-%d}
    spec:
      containers:
        - name: app
          image: registry.example.com/app:%d
          env:
            - {name: PORT, value: "8080"}
          ports:
            - containerPort: 8080
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 500m, memory: 256Mi}
`, i, i%10, i, i, i, i)
}

// BenchmarkLoad loads 1,000 small Deployments, one per file (files are
// validated in parallel), and as one multi-document file (serially).
func BenchmarkLoad(b *testing.B) {
	const n = 1000
	files := make([]manifests.File, n)
	var stream []byte
	for i := range files {
		files[i] = manifests.File{Path: fmt.Sprintf("app-%d.yaml", i), Data: deploymentYAML(i)}
		stream = append(append(stream, "---\n"...), files[i].Data...)
	}
	for _, bc := range []struct {
		name  string
		files []manifests.File
	}{
		{"files", files},
		{"stream", []manifests.File{{Path: "all.yaml", Data: stream}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				objs, err := Load(bc.files)
				if err != nil || len(objs) != n {
					b.Fatalf("got %d objects, %v", len(objs), err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "manifests/s")
		})
	}
}
