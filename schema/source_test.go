package schema

import (
	"strings"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func TestSourceAndNotifierDefaults(t *testing.T) {
	t.Parallel()
	objs, err := Load([]manifests.File{{Path: "s.yaml", Data: []byte(`apiVersion: capstan.io/v1
kind: Source
metadata: {name: apps}
spec: {url: /srv/git/apps}
---
apiVersion: capstan.io/v1
kind: Notifier
metadata: {name: hook}
spec: {type: generic, address: "https://hooks.example.com/x"}
`)}})
	require_NoError(t, err)
	s := objs[0].(*manifests.Source)
	if s.Spec.Interval != "1m" || s.Spec.Prune == nil || !*s.Spec.Prune || s.Namespace != "" {
		t.Fatalf("source defaults: %+v", s)
	}
	n := objs[1].(*manifests.Notifier)
	if strings.Join(n.Spec.Sources, ",") != "*" || strings.Join(n.Spec.Events, ",") != "sync,rollout,drift" {
		t.Fatalf("notifier defaults: %+v", n.Spec)
	}
}

func TestSourceAndNotifierInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"credentials in URL", "kind: Source\nspec: {url: 'https://user:pw@example.com/r.git'}", "spec.url: credentials in the URL are not allowed"},
		{"two refs", "kind: Source\nspec: {url: /r, ref: {tag: v1, branch: main}}", "spec.ref: give one of branch, tag, semver or commit"},
		{"bad semver", "kind: Source\nspec: {url: /r, ref: {semver: 'not a range'}}", "spec.ref.semver: invalid semver range"},
		{"short commit", "kind: Source\nspec: {url: /r, ref: {commit: abc}}", "spec.ref.commit"},
		{"path out", "kind: Source\nspec: {url: /r, path: ../x}", "spec.path: path \"../x\" leaves the repository"},
		{"interval", "kind: Source\nspec: {url: /r, interval: 0s}", "spec.interval: must be a positive duration"},
		{"bad interval", "kind: Source\nspec: {url: /r, interval: soon}", "spec.interval"},
		{"self dependency", "kind: Source\nspec: {url: /r, dependsOn: [{name: x}]}", "spec.dependsOn[0].name: a source cannot depend on itself"},
		{"twice", "kind: Source\nspec: {url: /r, dependsOn: [{name: a}, {name: a}]}", "spec.dependsOn[1].name: source \"a\" is listed twice"},
		{"root branch", "kind: Source\nspec: {url: /r, branch: main}", "spec.branch"},
		{"drift mode", "kind: Source\nspec: {url: /r, drift: {mode: ignore}}", "spec.drift.mode"},
		{"drift path", "kind: Source\nspec: {url: /r, drift: {ignore: [{paths: ['a..b']}]}}", "spec.drift.ignore[0].paths[0]: field path \"a..b\""},
		{"namespaced", "kind: Source\nspec: {url: /r}\nmetadata: {name: x, namespace: default}", "metadata.namespace"},
		{"notifier type", "kind: Notifier\nspec: {type: email}", "spec.type"},
		{"webhook without address", "kind: Notifier\nspec: {type: slack}", "type slack needs an address"},
		{"forge without token", "kind: Notifier\nspec: {type: github}", "needs a secretRef"},
		{"gitlab without address", "kind: Notifier\nspec: {type: gitlab, secretRef: {name: t}}", "type gitlab needs the API address"},
		{"address not a URL", "kind: Notifier\nspec: {type: generic, address: 'hooks.example.com'}", "spec.address: must be an http or https URL"},
		{"nats wildcard", "kind: Notifier\nspec: {type: nats, address: 'a.*'}", "spec.address: must be a NATS subject prefix"},
		{"bad event", "kind: Notifier\nspec: {type: nats, events: [deploy]}", "spec.events[0]"},
	} {
		doc := "apiVersion: capstan.io/v1\nmetadata: {name: x}\n" + tc.yaml + "\n"
		if strings.Contains(tc.yaml, "metadata:") {
			doc = "apiVersion: capstan.io/v1\n" + tc.yaml + "\n"
		}
		_, err := Load([]manifests.File{{Path: "x.yaml", Data: []byte(doc)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
