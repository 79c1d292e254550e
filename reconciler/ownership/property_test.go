package ownership

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/ownership/ownershiptest"
)

// The diff, the apply and the drift report agree: for random declared and
// live objects under random ignore rules, with an autoscaler owning the
// replicas and allocated Service fields in play, the fields Compare
// reports are exactly those the write (Update) changes, the write keeps
// what others own and what the source ignores, and comparing again after
// the write finds nothing to do.
func TestCompareAgreesWithTheWrite(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 15))
	for i := range 2000 {
		decl, live, policy := ownershiptest.RandomPair(r)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			cmp, err := Compare(decl, live, policy)
			if err != nil {
				t.Fatal(err)
			}
			written := Update(cmp.Want, live)
			after, err := DeclaredView(written)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cmp.Fields(), ChangedFields(cmp.LiveView, after); !slices.Equal(got, want) {
				t.Fatalf("Compare reports %v, the write changes %v", got, want)
			}
			again, err := Compare(decl, written, policy)
			if err != nil {
				t.Fatal(err)
			}
			if again.Changed() {
				t.Fatalf("after the write Compare still reports %v", again.Fields())
			}
			for _, f := range cmp.Fields() {
				if owned(live, policy, f) {
					t.Fatalf("Compare reports %s, which Git does not own here", f)
				}
			}
		})
	}
}

// owned reports whether field f of live belongs to someone besides Git.
func owned(live manifests.Object, policy *manifests.DriftPolicy, f string) bool {
	if live.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner] != "" && f == "spec.replicas" {
		return true
	}
	if policy != nil {
		for _, r := range policy.Ignore {
			if (r.Kind == "" || r.Kind == live.GetTypeMeta().Kind) && (r.Name == "" || r.Name == live.GetObjectMeta().Name) && slices.Contains(r.Paths, f) {
				return true
			}
		}
	}
	if s, ok := live.(*manifests.Service); ok && s.Spec.ClusterIP != "" {
		return f == "spec.clusterIP" || f == "spec.nodePort"
	}
	return false
}
