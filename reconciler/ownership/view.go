package ownership

import (
	"reflect"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// DeclaredView is the part of an object that Git owns, as JSON: no status,
// no server-set metadata.
func DeclaredView(obj manifests.Object) ([]byte, error) {
	c := cache.Clone(obj)
	m := c.GetObjectMeta()
	m.UID, m.ResourceVersion, m.Generation, m.CreationTimestamp, m.DeletionTimestamp, m.OwnerReferences = "", "", 0, nil, nil, nil
	m.DeletionGracePeriodSeconds = nil
	delete(m.Annotations, manifests.AnnotationCommit)
	if st, ok := statusField(c); ok {
		st.Set(reflect.Zero(st.Type()))
	}
	// The scheduler sets nodeName on an unbound pod: not drift.
	if p, ok := any(c).(*manifests.Pod); ok && obj.(*manifests.Pod).Spec.NodeName != "" {
		p.Spec.NodeName = ""
	}
	return cache.Encode(c)
}

// keepStatus copies what controllers and nodes own from cur into upd.
func keepStatus(upd, cur manifests.Object) {
	if u, ok := statusField(upd); ok {
		if c, ok := statusField(cur); ok && c.Type() == u.Type() {
			u.Set(c)
		}
	}
	if p, ok := upd.(*manifests.Pod); ok && p.Spec.NodeName == "" {
		p.Spec.NodeName = cur.(*manifests.Pod).Spec.NodeName
	}
}

// statusField is the Status field of kinds that have one: what controllers
// and nodes own, never Git. Every kind names it Status, so a new kind needs
// no change here.
func statusField(obj manifests.Object) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Status")
	return f, f.IsValid() && f.CanSet()
}

// Update is the object an apply writes over live for a comparison's Want:
// live's server-set metadata and status kept, the generation bumped.
func Update(want, live manifests.Object) manifests.Object {
	upd := cache.Clone(want)
	um, cm := upd.GetObjectMeta(), live.GetObjectMeta()
	um.UID, um.CreationTimestamp, um.OwnerReferences = cm.UID, cm.CreationTimestamp, cm.OwnerReferences
	um.DeletionTimestamp, um.DeletionGracePeriodSeconds = cm.DeletionTimestamp, cm.DeletionGracePeriodSeconds
	um.Generation = cm.Generation + 1
	keepStatus(upd, live)
	return upd
}
