package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

const internPodJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"NAME","namespace":"default","labels":{"app":"web"},"uid":"UID",
"creationTimestamp":"2026-11-22T04:29:39Z","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web","uid":"rs-1","controller":true}]},
"spec":{"containers":[{"name":"main","image":"IMAGE","resources":{"requests":{"cpu":"50m"}}}],"nodeName":"n1"},
"status":{"phase":"Running","conditions":[{"type":"PodScheduled","status":"True","lastTransitionTime":"2026-11-22T04:29:40Z"},
{"type":"Initialized","status":"True","lastTransitionTime":"2026-11-22T04:29:40Z"},{"type":"Ready","status":"True","lastTransitionTime":"2026-11-22T04:29:40Z"}],
"containerStatuses":[{"name":"main","state":{"running":{"startedAt":"2026-11-22T04:29:40Z"}},"ready":true,"restartCount":0,"image":"IMAGE","containerID":"podman://UID"}]}}`

func internTestPod(t *testing.T, name, image string) (*manifests.Pod, []byte) {
	t.Helper()
	src := strings.NewReplacer("NAME", name, "UID", "uid-"+name, "IMAGE", image).Replace(internPodJSON)
	o, err := manifests.Decode([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*manifests.Pod), enc
}

// Pods of one template share what they hold alike, and each still encodes
// as it was decoded.
func TestInternSharesAlikeParts(t *testing.T) {
	in := newInterner()
	a, encA := internTestPod(t, "a", "img:1")
	b, encB := internTestPod(t, "b", "img:1")
	c, encC := internTestPod(t, "c", "img:2") // a new template of the same owner
	for _, p := range []*manifests.Pod{a, b, c} {
		in.pod(p)
	}
	for p, want := range map[*manifests.Pod][]byte{a: encA, b: encB, c: encC} {
		got, _ := json.Marshal(p)
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed by interning:\n got %s\nwant %s", p.Name, got, want)
		}
	}
	same := func(what string, x, y any, want bool) {
		t.Helper()
		if (x == y) != want {
			t.Errorf("%s shared = %v, want %v", what, x == y, want)
		}
	}
	// Slices are compared by where their elements live, maps by a write.
	if len(a.Labels) == 0 || !sameMap(a.Labels, b.Labels) || !sameMap(a.Labels, c.Labels) {
		t.Error("the labels of pods of one owner are not one map")
	}
	same("owner references", &a.OwnerReferences[0], &b.OwnerReferences[0], true)
	same("containers of one template", &a.Spec.Containers[0], &b.Spec.Containers[0], true)
	same("containers of another template", &a.Spec.Containers[0], &c.Spec.Containers[0], false)
	same("conditions of one second", &a.Status.Conditions[0], &b.Status.Conditions[0], true)
	same("creation times of one second", a.CreationTimestamp, b.CreationTimestamp, true)
	same("container statuses (their own IDs)", &a.Status.ContainerStatuses[0], &b.Status.ContainerStatuses[0], false)
	// A shared slice has no room to spare: an append to it must copy,
	// never write into what other pods hold.
	if cap(b.Status.Conditions) != len(b.Status.Conditions) || cap(b.Spec.Containers) != len(b.Spec.Containers) || cap(b.OwnerReferences) != len(b.OwnerReferences) {
		t.Errorf("shared slices with spare capacity: conditions %d/%d, containers %d/%d, owners %d/%d",
			len(b.Status.Conditions), cap(b.Status.Conditions), len(b.Spec.Containers), cap(b.Spec.Containers), len(b.OwnerReferences), cap(b.OwnerReferences))
	}
}

// sameMap reports whether a and b are one map (a write to one shows in the
// other).
func sameMap(a, b map[string]string) bool {
	const probe = "\x00intern-probe"
	a[probe] = "x"
	_, ok := b[probe]
	delete(a, probe)
	return ok
}

// BenchmarkCacheHeapPerPod fills a cache with 30,000 running pods of 100
// ReplicaSets on 1,000 nodes, decoded and interned as the watch delivers
// them, and reports the heap they take with the cache's indexes.
func BenchmarkCacheHeapPerPod(b *testing.B) {
	const pods = 30000
	var perPod float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := New(nil, nil)
		for i := range pods {
			name := fmt.Sprintf("burst-%03d-%05d", i/300, i)
			src := strings.NewReplacer("NAME", name, "UID", fmt.Sprintf("0b7f5a8e-1c2d-4e5f-8a9b-%012d", i), "IMAGE", "localhost/capstan-test:latest",
				"rs-1", fmt.Sprintf("1b7f5a8e-1c2d-4e5f-8a9b-%012d", i/300), `"n1"`, fmt.Sprintf(`"sim-%04d"`, i%1000),
				"04:29:40", fmt.Sprintf("04:%02d:%02d", 29+i/3000, i/50%60)).Replace(internPodJSON)
			obj, err := manifests.Decode([]byte(src))
			if err != nil {
				b.Fatal(err)
			}
			c.intern.pod(obj.(*manifests.Pod))
			c.Set("Pod.default."+name, obj, uint64(i+1))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPod = float64(after.HeapAlloc-before.HeapAlloc) / pods
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perPod, "heap-B/pod")
}
