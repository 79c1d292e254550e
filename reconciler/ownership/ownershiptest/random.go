// Package ownershiptest makes random declared and live objects for the
// property tests of the comparison (ownership) and of the sync's apply
// (gitops).
package ownershiptest

import (
	"math/rand/v2"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// RandomPair makes a declared Deployment or Service (annotated as the
// source "root"'s), its live copy with random changes by hand, by an
// autoscaler or by the service controller, and random ignore rules.
func RandomPair(r *rand.Rand) (decl, live manifests.Object, policy *manifests.DriftPolicy) {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	if r.IntN(2) == 0 {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: pick("web", "api"), Namespace: "default",
			Annotations: map[string]string{manifests.AnnotationSource: "root"}}}
		if r.IntN(3) > 0 {
			d.Spec.Replicas = manifests.Ptr(int32(r.IntN(4)))
		}
		d.Spec.Paused = r.IntN(2) == 0
		d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		d.Spec.Template.Labels = map[string]string{"app": "web"}
		d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: pick("img:1", "img:2")}}
		manifests.SetKind(d)
		l := cache.Clone(d)
		l.UID, l.Generation, l.ResourceVersion = "uid-1", int64(r.IntN(5)+1), "7"
		l.Annotations[manifests.AnnotationCommit] = pick("abc", "def")
		if r.IntN(2) == 0 {
			l.Spec.Replicas = manifests.Ptr(int32(r.IntN(6)))
		}
		if r.IntN(3) == 0 {
			l.Annotations[manifests.AnnotationReplicasOwner] = "web-hpa"
		}
		if r.IntN(3) == 0 {
			l.Spec.Paused = !l.Spec.Paused
		}
		if r.IntN(3) == 0 {
			l.Spec.Template.Spec.Containers[0].Image = pick("img:1", "img:2", "img:live")
		}
		l.Status.Replicas = int32(r.IntN(4))
		decl, live = d, l
	} else {
		s := &manifests.Service{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default",
			Annotations: map[string]string{manifests.AnnotationSource: "root"}}}
		s.Spec.Type = pick(manifests.ServiceClusterIP, manifests.ServiceNodePort)
		s.Spec.Selector = map[string]string{"app": "web"}
		s.Spec.Ports = []manifests.ServicePort{{Port: 80, TargetPort: *manifests.FromInt(8080)}}
		if r.IntN(4) == 0 {
			s.Spec.ClusterIP = "10.96.0.20"
		}
		manifests.SetKind(s)
		l := cache.Clone(s)
		l.UID, l.Generation = "uid-2", 3
		if l.Spec.ClusterIP == "" {
			l.Spec.ClusterIP = pick("10.96.0.21", "10.96.0.22")
			l.Spec.ClusterIPs = []string{l.Spec.ClusterIP}
			l.Spec.IPFamilies = []string{"IPv4"}
		}
		if l.Spec.Type == manifests.ServiceNodePort {
			l.Spec.Ports[0].NodePort = int32(30000 + r.IntN(3))
		}
		if r.IntN(3) == 0 {
			l.Spec.Selector = map[string]string{"app": "other"}
		}
		decl, live = s, l
	}
	if r.IntN(2) == 0 {
		policy = &manifests.DriftPolicy{}
		for _, rule := range []manifests.DriftIgnore{
			{Kind: "Deployment", Paths: []string{"spec.paused"}},
			{Name: "web", Paths: []string{"spec.template.spec.containers[0].image"}},
			{Kind: "Service", Paths: []string{"spec.selector"}},
		} {
			if r.IntN(2) == 0 {
				policy.Ignore = append(policy.Ignore, rule)
			}
		}
	}
	return decl, live, policy
}
