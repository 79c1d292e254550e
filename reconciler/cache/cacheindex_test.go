package cache

import (
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func TestCacheIndexesFollowChanges(t *testing.T) {
	c := New(nil, nil)
	owner := manifests.OwnerReference{Kind: "ReplicaSet", Name: "rs", UID: "u1", Controller: true}
	pod := func(node string, owners ...manifests.OwnerReference) *manifests.Pod {
		return &manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod"},
			ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", OwnerReferences: owners},
			Spec:       manifests.PodSpec{NodeName: node}}
	}
	c.Set("Pod.default.p", pod("", owner), 1)
	if len(c.Owned("u1", "Pod")) != 1 || len(c.Owned("u1", "ReplicaSet")) != 0 || len(c.OnNode("n1")) != 0 {
		t.Fatal("a new pod is not indexed by its owner only")
	}
	c.Set("Pod.default.p", pod("n1", owner), 2) // bound
	if len(c.OnNode("n1")) != 1 || len(c.Owned("u1", "")) != 1 {
		t.Fatal("a bound pod is not indexed by its node")
	}
	c.Set("Pod.default.p", pod("n2"), 3) // orphaned and moved
	if len(c.OnNode("n1")) != 0 || len(c.OnNode("n2")) != 1 || len(c.Owned("u1", "")) != 0 {
		t.Fatal("indexes keep an object's old owner or node")
	}
	c.Set("Pod.default.p", nil, 4)
	if len(c.OnNode("n2")) != 0 {
		t.Fatal("a deleted pod stays indexed")
	}
	if _, ok := c.Get("Pod.default.p"); ok {
		t.Fatal("a deleted pod stays cached")
	}
}
