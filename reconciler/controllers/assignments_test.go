package controllers_test

import (
	"bytes"
	"log/slog"

	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// TestAssignmentCarriesReferencedObjects runs the control plane on a real
// in-process NATS server: a bound pod's assignment carries exactly the
// ConfigMaps and Secrets of its namespace it references, and follows them
// when they change, appear or go, at once (the resync is an hour away, so
// only the reference index can re-queue the pod).
func TestAssignmentCarriesReferencedObjects(t *testing.T) {
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	// The test plays the node n1 with its own identity.
	n1 := b.Connect(t, natsauth.RoleNode, "n1", natsbus.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
		Nodes: conn.Nodes, Events: conn.Events, Log: slog.New(slog.DiscardHandler), ResyncPeriod: time.Hour}
	done := make(chan struct{})
	go func() { _ = cp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	cm := func(ns, name, v string) *manifests.ConfigMap {
		return &manifests.ConfigMap{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"k": v}}
	}
	secret := func(name, v string) *manifests.Secret {
		return &manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string][]byte{"k": []byte(v)}}
	}
	create := func(obj manifests.Object) {
		t.Helper()
		if _, err := cache.CreateObject(ctx, conn.Objects, obj); err != nil {
			t.Fatal(err)
		}
	}
	update := func(obj manifests.Object) {
		t.Helper()
		e, err := conn.Objects.Get(ctx, manifests.KeyOf(obj))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cache.UpdateObject(ctx, conn.Objects, obj, e.Revision); err != nil {
			t.Fatal(err)
		}
	}
	// The node n1 publishes its age key; its Secrets are sealed to it.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	nodeObj, _ := json.Marshal(&manifests.Node{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: manifests.ObjectMeta{Name: "n1", Annotations: map[string]string{manifests.AnnotationAgeRecipient: id.Recipient().String()}}})
	if _, err := n1.Nodes.Put(ctx, "n1", nodeObj); err != nil {
		t.Fatal(err)
	}
	create(cm("default", "env-cm", "1"))
	create(cm("default", "unused", "1"))
	create(cm("other", "env-cm", "elsewhere")) // same name, other namespace
	create(secret("vol-secret", "s1"))
	create(secret("unused-secret", "x"))
	create(cm("default", "projected-cm", "p"))
	create(&manifests.Pod{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: manifests.PodSpec{NodeName: "n1",
			InitContainers: []manifests.Container{{Name: "init", Image: "img",
				EnvFrom: []manifests.EnvFromSource{{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "later-cm"}}}}},
			Containers: []manifests.Container{{Name: "c", Image: "img",
				Env: []manifests.EnvVar{{Name: "A", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.ConfigMapKeySelector{Name: "env-cm", Key: "k"}}}}}},
			Volumes: []manifests.Volume{
				{Name: "s", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "vol-secret"}}},
				{Name: "p", VolumeSource: manifests.VolumeSource{Projected: &manifests.ProjectedVolumeSource{Sources: []manifests.VolumeProjection{
					{ConfigMap: &manifests.ConfigMapProjection{Name: "projected-cm"}}}}}},
			}}})

	// Every put of the pod's assignment, in order.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	ch, err := n1.Assignments.Watch(wctx, "n1.default.p")
	if err != nil {
		t.Fatal(err)
	}
	puts := make(chan manifests.Assignment, 100)
	go func() {
		for e := range ch {
			if e.Op != bus.OpPut {
				continue
			}
			var a manifests.Assignment
			if err := json.Unmarshal(e.Value, &a); err != nil {
				t.Errorf("undecodable assignment: %v", err)
				continue
			}
			if len(a.Secrets) != 0 || bytes.Contains(e.Value, []byte(`"k":"czE`)) {
				t.Errorf("an assignment carries a Secret in plain text: %s", e.Value)
			}
			if err := secrets.Open(&a, id); err != nil {
				t.Errorf("open the assignment's secrets: %v", err)
			}
			puts <- a
		}
	}()
	summary := func(a manifests.Assignment) string {
		var parts []string
		for _, c := range a.ConfigMaps {
			parts = append(parts, fmt.Sprintf("cm %s/%s=%s", c.Namespace, c.Name, c.Data["k"]))
		}
		for _, s := range a.Secrets {
			parts = append(parts, fmt.Sprintf("secret %s/%s=%s", s.Namespace, s.Name, s.Data["k"]))
		}
		slices.Sort(parts)
		return fmt.Sprint(parts)
	}
	next := func(want string) {
		t.Helper()
		select {
		case a := <-puts:
			if a.Pod.Name != "p" || a.Pod.Spec.NodeName != "n1" {
				t.Fatalf("assignment pod %+v", a.Pod.ObjectMeta)
			}
			if got := summary(a); got != want {
				t.Fatalf("assignment carries %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no assignment put; want %s", want)
		}
	}
	next("[cm default/env-cm=1 cm default/projected-cm=p secret default/vol-secret=s1]")

	// An unreferenced object changes: nothing is written. A referenced one
	// changes: the assignment follows, once.
	update(cm("default", "unused", "2"))
	update(secret("unused-secret", "y"))
	update(cm("other", "env-cm", "elsewhere2"))
	update(cm("default", "env-cm", "2"))
	next("[cm default/env-cm=2 cm default/projected-cm=p secret default/vol-secret=s1]")
	update(secret("vol-secret", "s2"))
	next("[cm default/env-cm=2 cm default/projected-cm=p secret default/vol-secret=s2]")

	// The missing one appears, then a referenced one goes.
	create(cm("default", "later-cm", "l"))
	next("[cm default/env-cm=2 cm default/later-cm=l cm default/projected-cm=p secret default/vol-secret=s2]")
	if err := cache.DeleteObject(ctx, conn.Objects, manifests.Key("ConfigMap", "default", "projected-cm"), 0); err != nil {
		t.Fatal(err)
	}
	next("[cm default/env-cm=2 cm default/later-cm=l secret default/vol-secret=s2]")
	select {
	case a := <-puts:
		t.Fatalf("an extra assignment put: %s", summary(a))
	case <-time.After(500 * time.Millisecond):
	}
}

func TestPodReferences(t *testing.T) {
	spec := &manifests.PodSpec{
		Containers: []manifests.Container{{Name: "c",
			EnvFrom: []manifests.EnvFromSource{{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "a"}}, {SecretRef: &manifests.SecretEnvSource{Name: "s1"}}},
			Env: []manifests.EnvVar{{Name: "X", Value: "v"},
				{Name: "Y", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.ConfigMapKeySelector{Name: "b", Key: "k"}}},
				{Name: "Z", ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.SecretKeySelector{Name: "s1", Key: "k"}}},
				{Name: "F", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		Volumes: []manifests.Volume{
			{Name: "v1", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "a"}}},
			{Name: "v2", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "s2"}}},
			{Name: "v3", VolumeSource: manifests.VolumeSource{Projected: &manifests.ProjectedVolumeSource{Sources: []manifests.VolumeProjection{
				{ConfigMap: &manifests.ConfigMapProjection{Name: "c"}}, {Secret: &manifests.SecretProjection{Name: "s3"}}}}}},
			{Name: "v4", VolumeSource: manifests.VolumeSource{EmptyDir: &manifests.EmptyDirVolumeSource{}}},
		},
	}
	cms, secs := controllers.PodReferences(spec)
	if fmt.Sprint(cms) != "[a b c]" || fmt.Sprint(secs) != "[s1 s2 s3]" {
		t.Errorf("PodReferences = %v, %v", cms, secs)
	}
}
