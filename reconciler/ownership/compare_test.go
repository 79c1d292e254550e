package ownership

import (
	"reflect"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

func TestCopyFields(t *testing.T) {
	want := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Annotations: map[string]string{"git": "1"}}}
	want.Spec.Replicas = manifests.Ptr(int32(2))
	want.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: "img:1"}}
	manifests.SetKind(want)
	cur := cache.Clone(want)
	cur.Spec.Replicas = manifests.Ptr(int32(7))
	cur.Spec.Template.Spec.Containers[0].Image = "img:live"
	cur.Annotations = map[string]string{"example.com/x": "live"}
	paths := func(ps ...string) []manifests.FieldPath {
		var out []manifests.FieldPath
		for _, p := range ps {
			fp, err := manifests.ParseFieldPath(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fp)
		}
		return out
	}
	got, err := CopyFields(want, cur, paths("spec.replicas", "spec.template.spec.containers[0].image",
		`metadata.annotations["example.com/x"]`, `metadata.annotations["git"]`, "spec.template.spec.containers[5].image", "spec.paused"))
	if err != nil {
		t.Fatal(err)
	}
	d := got.(*manifests.Deployment)
	if *d.Spec.Replicas != 7 || d.Spec.Template.Spec.Containers[0].Image != "img:live" ||
		!reflect.DeepEqual(d.Annotations, map[string]string{"example.com/x": "live"}) || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("CopyFields = %+v", d)
	}
	if *want.Spec.Replicas != 2 {
		t.Fatal("CopyFields changed its input")
	}
}

func TestWithIgnoredMatches(t *testing.T) {
	policy := &manifests.DriftPolicy{Ignore: []manifests.DriftIgnore{
		{Kind: "Deployment", Name: "web", Paths: []string{"spec.replicas"}},
		{Namespace: "other", Paths: []string{"spec.paused"}},
	}}
	mk := func(ns, name string, replicas int32) *manifests.Deployment {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: ns}}
		d.Spec.Replicas = manifests.Ptr(replicas)
		manifests.SetKind(d)
		return d
	}
	if o, ok, _ := withIgnored(policy, mk("default", "web", 2), mk("default", "web", 5)); !ok || *o.(*manifests.Deployment).Spec.Replicas != 5 {
		t.Fatalf("rule on web: %v %+v", ok, o)
	}
	if _, ok, _ := withIgnored(policy, mk("default", "api", 2), mk("default", "api", 5)); ok {
		t.Fatal("a rule for web matched api")
	}
	if o, ok, _ := withIgnored(policy, mk("other", "api", 2), mk("other", "api", 5)); !ok || *o.(*manifests.Deployment).Spec.Replicas != 2 {
		t.Fatalf("namespace rule: %v %+v", ok, o)
	}
}

// TestPodDriftPolicy: a pod gets its source's mode and the ignore rules
// that match it or its owners, with paths relative to the pod.
func TestPodDriftPolicy(t *testing.T) {
	c := cache.New(nil, nil)
	src := &manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "apps"}}
	src.Spec.Drift = &manifests.DriftPolicy{Mode: DriftReport, Ignore: []manifests.DriftIgnore{
		{Kind: "Deployment", Name: "web", Paths: []string{"spec.template.spec.containers[0].resources.limits", "spec.replicas"}},
		{Kind: "Deployment", Name: "api", Paths: []string{"spec.template.spec.containers[1]"}},
		{Kind: "Pod", Paths: []string{"spec.containers[2].name"}},
	}}
	manifests.SetKind(src)
	c.Set("Source._.apps", src, 1)
	dep := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "d1",
		Annotations: map[string]string{manifests.AnnotationSource: "apps"}}}
	manifests.SetKind(dep)
	c.Set("Deployment.default.web", dep, 2)
	rs := &manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "web-1", Namespace: "default", UID: "r1",
		OwnerReferences: []manifests.OwnerReference{{Kind: "Deployment", Name: "web", UID: "d1", Controller: true}}}}
	manifests.SetKind(rs)
	c.Set("ReplicaSet.default.web-1", rs, 3)
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "web-1-x", Namespace: "default", UID: "p1",
		OwnerReferences: []manifests.OwnerReference{{Kind: "ReplicaSet", Name: "web-1", UID: "r1", Controller: true}}}}
	manifests.SetKind(pod)

	got := PodDriftPolicy(c, pod)
	want := &manifests.PodDriftPolicy{Mode: DriftReport, Ignore: []string{"spec.containers[0].resources.limits", "spec.containers[2].name"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("policy %+v, want %+v", got, want)
	}
	src.Spec.Drift = nil
	if got := PodDriftPolicy(c, pod); got != nil {
		t.Fatalf("no drift policy: %+v", got)
	}
	orphan := cache.Clone(pod)
	orphan.OwnerReferences[0].UID = "other"
	src.Spec.Drift = &manifests.DriftPolicy{Mode: DriftReport}
	if got := PodDriftPolicy(c, orphan); got != nil {
		t.Fatalf("a pod of no source: %+v", got)
	}
}

func TestWithOwnedReplicas(t *testing.T) {
	declared := &manifests.Deployment{TypeMeta: manifests.TypeMeta{Kind: "Deployment"}, ObjectMeta: manifests.ObjectMeta{Name: "web"},
		Spec: manifests.DeploymentSpec{Replicas: manifests.Ptr(int32(2))}}
	live := cache.Clone(declared)
	live.Spec.Replicas = manifests.Ptr(int32(7))
	if _, ok := withOwnedReplicas(declared, live); ok {
		t.Fatal("not owned, yet taken")
	}
	live.Annotations = map[string]string{manifests.AnnotationReplicasOwner: "web"}
	got, ok := withOwnedReplicas(declared, live)
	if !ok {
		t.Fatal("owned, not taken")
	}
	d := got.(*manifests.Deployment)
	if *d.Spec.Replicas != 7 || d.Annotations[manifests.AnnotationReplicasOwner] != "web" {
		t.Fatalf("got %+v", d)
	}
	if *declared.Spec.Replicas != 2 || declared.Annotations != nil {
		t.Fatal("the declared object was changed")
	}
	a, _ := DeclaredView(got)
	b, _ := DeclaredView(live)
	if string(a) != string(b) {
		t.Fatalf("views differ:\n%s\n%s", a, b)
	}
}

func TestWithAllocated(t *testing.T) {
	_, git := svcAt("web", 1, func(s *manifests.Service) { s.Spec.Type = manifests.ServiceNodePort })
	_, live := svcAt("web", 1, func(s *manifests.Service) {
		s.Spec.Type = manifests.ServiceNodePort
		s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies = "10.96.0.7", []string{"10.96.0.7"}, []string{"IPv4"}
		s.Spec.Ports[0].NodePort = 31000
	})
	o, ok := withAllocated(git, live)
	if !ok {
		t.Fatal("nothing taken from the live Service")
	}
	got := o.(*manifests.Service)
	a, _ := DeclaredView(got)
	b, _ := DeclaredView(live)
	if string(a) != string(b) {
		t.Errorf("Git's Service with the allocations differs from the live one:\n%s\n%s", a, b)
	}
	// Git setting its own values, or another type, wins.
	git.Spec.Ports[0].NodePort = 30500
	git.Spec.ClusterIP = "10.96.0.9"
	o, _ = withAllocated(git, live)
	if s := o.(*manifests.Service); s.Spec.Ports[0].NodePort != 30500 || s.Spec.ClusterIP != "10.96.0.9" || len(s.Spec.ClusterIPs) != 0 {
		t.Errorf("Git's own values: %+v", s.Spec)
	}
	_, headless := svcAt("web", 1, func(s *manifests.Service) { s.Spec.ClusterIP = manifests.ClusterIPNone })
	if _, ok := withAllocated(headless, live); ok {
		t.Error("a headless Service took a cluster IP")
	}
}

func TestChangedFields(t *testing.T) {
	a := []byte(`{"spec":{"replicas":1,"template":{"spec":{"containers":[{"image":"a","name":"c"}]}}},"metadata":{"name":"x"}}`)
	b := []byte(`{"spec":{"replicas":2,"template":{"spec":{"containers":[{"image":"b","name":"c"}]}},"paused":true},"metadata":{"name":"x"}}`)
	got := ChangedFields(a, b)
	want := []string{"spec.paused", "spec.replicas", "spec.template.spec.containers[0].image"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// svcAt is a ClusterIP Service named name, changed by mutate.
func svcAt(name string, created int, mutate func(*manifests.Service)) (string, *manifests.Service) {
	svc := &manifests.Service{
		TypeMeta:   manifests.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", UID: "uid-" + name, CreationTimestamp: manifests.NewTime(time.Unix(int64(1000+created), 0))},
		Spec: manifests.ServiceSpec{Type: manifests.ServiceClusterIP, Selector: map[string]string{"app": "web"},
			Ports: []manifests.ServicePort{{Port: 80, Protocol: "TCP", TargetPort: *manifests.FromInt(8080)}}},
	}
	if mutate != nil {
		mutate(svc)
	}
	return manifests.KeyOf(svc), svc
}
