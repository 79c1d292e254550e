package controllers

import (
	"context"
	"errors"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// ownedKinds are the kinds that controllers make and owner references tie
// to their makers.
var ownedKinds = []string{"ReplicaSet", "Pod", "Job", "EndpointSlice"}

// gcController deletes the objects whose controller is gone: a pod
// gracefully, others at once.
type gcController struct{ queued }

func newGCController(sh *shared) *gcController {
	return &gcController{newQueued(sh, "")}
}

// reconcile deletes an object whose controller no longer exists (or is a
// newer object of the same name, with another uid); a pod gracefully.
func (ctl *gcController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil
	}
	ref := c.Obj.GetObjectMeta().Controller()
	if ref == nil {
		return nil
	}
	if owner, ok := ctl.objects.Get(cache.OwnerKey(c.Obj)); ok && owner.Obj.GetObjectMeta().UID == ref.UID {
		return nil
	}
	err := DeleteGracefully(ctx, ctl.store, key, c.Rev)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	return err
}

// register routes the controller its events: a live object whose
// controller is new to it, and the dependents of a deleted object.
func (ctl *gcController) register(objects, _ *cache.Cache) {
	objects.AddHandler(func(key string, old, cur manifests.Object) {
		if cur == nil {
			// The dependents of a deleted owner may now be garbage.
			for _, k := range ctl.dependentsOf(old) {
				ctl.queue.Add(k)
			}
			return
		}
		if cur.GetObjectMeta().Controller() != nil && (old == nil || !sameController(old, cur)) {
			ctl.queue.Add(key) // it only checks that a live object's controller exists
		}
	})
}

// ownedKeys lists the objects that have a controller, for the resync.
func (ctl *gcController) ownedKeys(keep func(string) bool) []string {
	var keys []string
	for _, k := range ownedKinds {
		keys = append(keys, ctl.objects.Keys(k, func(c *cache.Cached) bool {
			return keep(c.Key) && c.Obj.GetObjectMeta().Controller() != nil
		})...)
	}
	return keys
}

// dependentsOf lists the objects owner controls.
func (ctl *gcController) dependentsOf(owner manifests.Object) []string {
	var keys []string
	for _, c := range ctl.objects.Owned(owner.GetObjectMeta().UID, "") {
		keys = append(keys, c.Key)
	}
	return keys
}
