package gitops

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/ownership"
)

// capstan diff predicts exactly what the sync writes: for random declared
// and live objects under random ignore rules, with an autoscaler owning
// the replicas and allocated Service fields in play, the plan's fields are
// those the sync's apply reports and those it changes on the bus.
func TestApplyWritesWhatThePlanSays(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	ctx := context.Background()
	for i := range 300 {
		decl, live, policy := randomDeclaredAndLive(r)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			store := memstore.New()
			if _, err := cache.CreateObject(ctx, store, live); err != nil {
				t.Fatal(err)
			}
			key := manifests.KeyOf(decl)
			before, _, err := cache.GetObject(ctx, store, key)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := ownership.MakePlan(ownership.PlanInput{Declared: []manifests.Object{decl}, Live: []manifests.Object{before},
				Source: "root", Policy: policy})
			if err != nil {
				t.Fatal(err)
			}
			var predicted []string
			for _, c := range plan.Changes {
				for _, f := range c.Fields {
					predicted = append(predicted, f.Path)
				}
			}

			s := &Syncer{Name: "root", Objects: store, Drift: policy, Log: slog.New(slog.DiscardHandler),
				views: map[string]string{}, appliedObjs: map[string]manifests.Object{}}
			changes, err := s.apply(ctx, []manifests.Object{cache.Clone(decl)}, true)
			if err != nil {
				t.Fatal(err)
			}
			var reported []string
			for _, c := range changes {
				reported = append(reported, c.Fields...)
			}
			after, _, err := cache.GetObject(ctx, store, key)
			if err != nil {
				t.Fatal(err)
			}
			bv, _ := ownership.DeclaredView(before)
			av, _ := ownership.DeclaredView(after)
			written := ownership.ChangedFields(bv, av)
			if !slices.Equal(predicted, reported) || !slices.Equal(predicted, written) {
				t.Fatalf("diff predicts %v, the sync reports %v and writes %v", predicted, reported, written)
			}
		})
	}
}

// randomDeclaredAndLive makes a declared object, the source's live copy of
// it with random changes by hand, by an autoscaler or by the service
// controller, and random ignore rules.
func randomDeclaredAndLive(r *rand.Rand) (decl, live manifests.Object, policy *manifests.DriftPolicy) {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	if r.IntN(2) == 0 {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: pick("web", "api"), Namespace: "default"}}
		if r.IntN(3) > 0 {
			d.Spec.Replicas = manifests.Ptr(int32(r.IntN(4)))
		}
		d.Spec.Paused = r.IntN(2) == 0
		d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		d.Spec.Template.Labels = map[string]string{"app": "web"}
		d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: pick("img:1", "img:2")}}
		manifests.SetKind(d)
		l := cache.Clone(d)
		l.Annotations = map[string]string{manifests.AnnotationSource: "root"}
		l.UID, l.Generation = "uid-1", int64(r.IntN(5)+1)
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
		s := &manifests.Service{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}}
		s.Spec.Type = pick(manifests.ServiceClusterIP, manifests.ServiceNodePort)
		s.Spec.Selector = map[string]string{"app": "web"}
		s.Spec.Ports = []manifests.ServicePort{{Port: 80, TargetPort: *manifests.FromInt(8080)}}
		if r.IntN(4) == 0 {
			s.Spec.ClusterIP = "10.96.0.20"
		}
		manifests.SetKind(s)
		l := cache.Clone(s)
		l.Annotations = map[string]string{manifests.AnnotationSource: "root"}
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
