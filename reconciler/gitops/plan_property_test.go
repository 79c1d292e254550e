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
	"github.com/capstan-io/capstan/reconciler/ownership/ownershiptest"
)

// capstan diff predicts exactly what the sync writes: for random declared
// and live objects under random ignore rules, with an autoscaler owning
// the replicas and allocated Service fields in play, the plan's fields are
// those the sync's apply reports and those it changes on the bus.
func TestApplyWritesWhatThePlanSays(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	ctx := context.Background()
	for i := range 300 {
		decl, live, policy := ownershiptest.RandomPair(r)
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
