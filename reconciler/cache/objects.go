package cache

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Encode returns obj's JSON as stored in the objects bucket: the
// resourceVersion is the KV revision, so it is not stored in the value.
func Encode(obj manifests.Object) ([]byte, error) {
	m := obj.GetObjectMeta()
	rv := m.ResourceVersion
	m.ResourceVersion = ""
	defer func() { m.ResourceVersion = rv }()
	return json.Marshal(obj)
}

// CreateObject writes a new object, filling in its uid and creation time.
func CreateObject(ctx context.Context, s bus.Store, obj manifests.Object) (uint64, error) {
	manifests.SetKind(obj)
	m := obj.GetObjectMeta()
	if m.UID == "" {
		m.UID = NewUID()
	}
	if m.CreationTimestamp == nil {
		m.CreationTimestamp = manifests.Now()
	}
	if m.Generation == 0 {
		m.Generation = 1
	}
	b, err := Encode(obj)
	if err != nil {
		return 0, err
	}
	rev, err := s.Create(ctx, manifests.KeyOf(obj), b)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", manifests.KeyOf(obj), err)
	}
	return rev, nil
}

// UpdateObject writes obj if the stored revision is still rev.
func UpdateObject(ctx context.Context, s bus.Store, obj manifests.Object, rev uint64) (uint64, error) {
	return UpdateEchoed(ctx, s, nil, obj, rev)
}

// updateEchoed is UpdateObject for an object the cache takes back as it
// is when the watch returns it (Cache.expect): obj is the cache's after
// the call, and the caller must not touch it again. A nil cache takes
// nothing back.
func UpdateEchoed(ctx context.Context, s bus.Store, cache *Cache, obj manifests.Object, rev uint64) (uint64, error) {
	b, err := Encode(obj)
	if err != nil {
		return 0, err
	}
	key := manifests.KeyOf(obj)
	done := cache.expect(key, b, obj)
	n, err := s.Update(ctx, key, b, rev)
	done(n, err)
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", key, err)
	}
	return n, nil
}

// DeleteObject deletes key if the stored revision is still rev (0: any).
func DeleteObject(ctx context.Context, s bus.Store, key string, rev uint64) error {
	if err := s.Delete(ctx, key, rev); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// GetObject reads and decodes one object.
func GetObject(ctx context.Context, s bus.Store, key string) (manifests.Object, uint64, error) {
	e, err := s.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	obj, err := manifests.Decode(e.Value)
	if err != nil {
		return nil, 0, err
	}
	obj.GetObjectMeta().ResourceVersion = fmt.Sprint(e.Revision)
	return obj, e.Revision, nil
}

// NewUID returns a random RFC 4122 version 4 UUID.
func NewUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// RandomSuffix returns n characters safe in DNS names and unlikely to spell
// words, for generated pod names.
func RandomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	return string(b)
}

// ownerRef makes a controller owner reference to obj.
func OwnerRef(obj manifests.Object) manifests.OwnerReference {
	t := obj.GetTypeMeta()
	m := obj.GetObjectMeta()
	return manifests.OwnerReference{APIVersion: t.APIVersion, Kind: t.Kind, Name: m.Name, UID: m.UID, Controller: true}
}

// isControlledBy reports whether obj's controller is owner.
func IsControlledBy(obj manifests.Object, owner manifests.Object) bool {
	ref := obj.GetObjectMeta().Controller()
	return ref != nil && ref.UID == owner.GetObjectMeta().UID
}

// ownerKey returns the objects key of obj's controller, or "".
func OwnerKey(obj manifests.Object) string {
	ref := obj.GetObjectMeta().Controller()
	if ref == nil {
		return ""
	}
	return manifests.Key(ref.Kind, obj.GetObjectMeta().Namespace, ref.Name)
}
