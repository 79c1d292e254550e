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

// reconcileGC deletes an object whose controller no longer exists (or is a
// newer object of the same name, with another uid); a pod gracefully.
func (cp *ControlPlane) reconcileGC(ctx context.Context, key string) error {
	c, ok := cp.objects.Get(key)
	if !ok {
		return nil
	}
	ref := c.Obj.GetObjectMeta().Controller()
	if ref == nil {
		return nil
	}
	if owner, ok := cp.objects.Get(cache.OwnerKey(c.Obj)); ok && owner.Obj.GetObjectMeta().UID == ref.UID {
		return nil
	}
	err := DeleteGracefully(ctx, cp.Objects, key, c.Rev)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	return err
}

func (cp *ControlPlane) ownedKeys(keep func(string) bool) []string {
	var keys []string
	for _, k := range ownedKinds {
		keys = append(keys, cp.objects.Keys(k, func(c *cache.Cached) bool {
			return keep(c.Key) && c.Obj.GetObjectMeta().Controller() != nil
		})...)
	}
	return keys
}

func (cp *ControlPlane) dependentsOf(owner manifests.Object) []string {
	var keys []string
	for _, c := range cp.objects.Owned(owner.GetObjectMeta().UID, "") {
		keys = append(keys, c.Key)
	}
	return keys
}
