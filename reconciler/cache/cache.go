package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Cached is one object as the cache holds it. Obj is shared: callers must
// not modify it (Clone it first).
type Cached struct {
	Key string
	Obj manifests.Object
	Rev uint64
}

// Handler is told of every change: old is nil for a new key, cur is nil for
// a deleted one.
type Handler func(key string, old, cur manifests.Object)

// Cache mirrors a bucket of objects (objects, nodes) in memory through one watch, indexed by
// kind, and tells handlers of each change. Controllers read from it and
// write to the store with CAS on the cached revision; a lost race is retried
// after the watch delivers the newer object. It is safe for concurrent use.
type Cache struct {
	store    bus.Store
	log      *slog.Logger
	mu       sync.RWMutex
	all      map[string]*Cached            // key -> object: Get is one lookup
	byKind   map[string]map[string]*Cached // kind -> key -> object
	byOwner  map[string]map[string]*Cached // controller owner uid -> key -> object
	byNode   map[string]map[string]*Cached // a pod's spec.nodeName -> key -> pod
	hmu      sync.RWMutex                  // handlers: a registration excludes a dispatch
	handlers []Handler
	started  bool // under hmu: Run began, a new handler is told of what is held
	synced   chan struct{}
	intern   *interner

	echoMu sync.Mutex
	echoes map[string]*echo // key -> an object this process is writing
}

// echo is an object this process wrote, held until the watch brings its
// bytes back: the cache then takes the object as it is instead of
// decoding what it encoded itself. A bind or a mirrored status is a whole
// pod written and read back, and decoding pods was the largest single
// part of the control plane's CPU in a burst (docs/BENCHMARKS.md).
type echo struct {
	data []byte
	obj  manifests.Object
	rev  uint64 // once the write returned: the revision it took
}

// New returns a cache of store. One cache serves a process: the sync and
// the control plane share it (client-go's shared informer is the model).
func New(store bus.Store, log *slog.Logger) *Cache {
	return &Cache{store: store, log: log, all: map[string]*Cached{}, byKind: map[string]map[string]*Cached{},
		byOwner: map[string]map[string]*Cached{}, byNode: map[string]map[string]*Cached{}, synced: make(chan struct{}), intern: newInterner(),
		echoes: map[string]*echo{}}
}

// AddHandler registers h. Registered once Run has begun, h is first told
// of every object held, as added; an object changing meanwhile may be told
// twice, never missed.
func (c *Cache) AddHandler(h Handler) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	c.handlers = append(c.handlers, h)
	if !c.started {
		return
	}
	c.mu.RLock()
	held := make([]*Cached, 0, len(c.all))
	for _, o := range c.all {
		held = append(held, o)
	}
	c.mu.RUnlock()
	for _, o := range held {
		h(o.Key, nil, o.Obj)
	}
}

// Synced is closed once the cache holds every object that existed when the
// watch began.
func (c *Cache) Synced() <-chan struct{} { return c.synced }

// Run mirrors the store until ctx ends; a watch that ends is re-established
// (bus.Reflect), so the cache never goes stale silently.
func (c *Cache) Run(ctx context.Context) error {
	c.hmu.Lock()
	c.started = true
	c.hmu.Unlock()
	synced := false
	return bus.ReflectInto(ctx, c.store, ">", c.log, c, func(e bus.Entry) {
		switch e.Op {
		case bus.OpSynced:
			if !synced {
				synced = true
				close(c.synced)
			}
		case bus.OpPut:
			obj := c.echoed(e)
			if obj == nil {
				var err error
				if obj, err = manifests.Decode(e.Value); err != nil {
					c.log.Warn("skip undecodable object", "key", e.Key, "err", err)
					return
				}
				if p, ok := obj.(*manifests.Pod); ok {
					c.intern.pod(p) // pods are most of what the cache holds
				}
			}
			obj.GetObjectMeta().ResourceVersion = strconv.FormatUint(e.Revision, 10)
			c.Set(e.Key, obj, e.Revision)
		case bus.OpDelete:
			c.echoMu.Lock()
			delete(c.echoes, e.Key)
			c.echoMu.Unlock()
			c.Set(e.Key, nil, e.Revision)
		}
	})
}

// Revision is the revision of the object cached at key (bus.Revisions:
// the watch keeps no copy of its own).
func (c *Cache) Revision(key string) (uint64, bool) {
	o, ok := c.Get(key)
	if !ok {
		return 0, false
	}
	return o.Rev, true
}

// Known lists the cached keys with their revisions (bus.Revisions).
func (c *Cache) Known() map[string]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]uint64, len(c.all))
	for k, o := range c.all {
		out[k] = o.Rev
	}
	return out
}

// expect tells the cache that obj, encoded as data, is being written at
// key, and returns the function to call with the write's outcome. When
// the watch brings back exactly data, the cache takes obj itself rather
// than a decoding of data; the writer must not touch obj afterwards, and
// obj must be what decoding data gives (a shallow copy of a cached object
// with some fields set is: its other parts are already as decoded and
// shared, as cached objects are never modified in place). A failed write
// forgets obj, and so does any later revision of the key. A nil cache
// expects nothing.
func (c *Cache) expect(key string, data []byte, obj manifests.Object) func(rev uint64, err error) {
	if c == nil {
		return func(uint64, error) {}
	}
	x := &echo{data: data, obj: obj}
	c.echoMu.Lock()
	c.echoes[key] = x
	c.echoMu.Unlock()
	return func(rev uint64, err error) {
		c.echoMu.Lock()
		defer c.echoMu.Unlock()
		if c.echoes[key] != x {
			return // taken, or replaced by a newer write
		}
		if err != nil {
			delete(c.echoes, key)
		} else {
			x.rev = rev
		}
	}
}

// echoed returns the object expected for e, if e carries its bytes.
func (c *Cache) echoed(e bus.Entry) manifests.Object {
	c.echoMu.Lock()
	defer c.echoMu.Unlock()
	x := c.echoes[e.Key]
	switch {
	case x == nil:
		return nil
	case bytes.Equal(x.data, e.Value):
		delete(c.echoes, e.Key)
		return x.obj
	case x.rev != 0 && e.Revision >= x.rev:
		delete(c.echoes, e.Key) // its revision went by (a watch started again)
	}
	return nil
}

// Set records obj (nil: deleted) at key and revision rev, and tells the
// handlers; the watch calls it (tests may).
func (c *Cache) Set(key string, obj manifests.Object, rev uint64) {
	c.mu.Lock()
	prev, had := c.all[key]
	var kind string
	switch {
	case obj != nil:
		kind = obj.GetTypeMeta().Kind
	case had:
		kind = prev.Obj.GetTypeMeta().Kind
	default:
		c.mu.Unlock()
		return
	}
	m := c.byKind[kind]
	if m == nil {
		m = map[string]*Cached{}
		c.byKind[kind] = m
	}
	var old manifests.Object
	if had {
		if prev.Rev > rev {
			c.mu.Unlock()
			return // an older event than what we hold
		}
		old = prev.Obj
		c.unindex(prev)
		key = prev.Key
	} else if obj != nil {
		// One string per key, held by every map and by each object's
		// later versions: a key from the watch is part of its message's
		// subject, which it would keep alive (docs/BENCHMARKS.md).
		key = strings.Clone(key)
	}
	if obj == nil {
		delete(m, key)
		delete(c.all, key)
	} else {
		cur := &Cached{Key: key, Obj: obj, Rev: rev}
		m[key] = cur
		c.all[key] = cur
		c.index(cur)
	}
	c.mu.Unlock()
	if old == nil && obj == nil {
		return
	}
	c.hmu.RLock()
	defer c.hmu.RUnlock()
	for _, h := range c.handlers {
		h(key, old, obj)
	}
}

// indexKeys returns the owner uid and, for a pod, the node of o.
func indexKeys(o *Cached) (owner, node string) {
	if ref := o.Obj.GetObjectMeta().Controller(); ref != nil {
		owner = ref.UID
	}
	if p, ok := o.Obj.(*manifests.Pod); ok {
		node = p.Spec.NodeName
	}
	return owner, node
}

func addTo(idx map[string]map[string]*Cached, k string, o *Cached) {
	if k == "" {
		return
	}
	m := idx[k]
	if m == nil {
		m = map[string]*Cached{}
		idx[k] = m
	}
	m[o.Key] = o
}

func removeFrom(idx map[string]map[string]*Cached, k string, key string) {
	if m := idx[k]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(idx, k)
		}
	}
}

func (c *Cache) index(o *Cached) {
	owner, node := indexKeys(o)
	addTo(c.byOwner, owner, o)
	addTo(c.byNode, node, o)
}

func (c *Cache) unindex(o *Cached) {
	owner, node := indexKeys(o)
	removeFrom(c.byOwner, owner, o.Key)
	removeFrom(c.byNode, node, o.Key)
}

// Owned returns the cached objects of kind ("" for any) whose controller
// owner has uid.
func (c *Cache) Owned(uid, kind string) []*Cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	owned := c.byOwner[uid]
	out := make([]*Cached, 0, len(owned)) // grown by append, it took about twice the room
	for _, o := range owned {
		if kind == "" || o.Obj.GetTypeMeta().Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// OnNode returns the cached pods bound to node.
func (c *Cache) OnNode(node string) []*Cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Cached, 0, len(c.byNode[node]))
	for _, o := range c.byNode[node] {
		out = append(out, o)
	}
	return out
}

// Keys returns the keys of the cached objects of kind that keep takes;
// keep runs under the cache's read lock. A keep that looks at the key
// before the object is cheaper: reading each object of 30,000 is a
// cache miss each.
func (c *Cache) Keys(kind string, keep func(*Cached) bool) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for _, o := range c.byKind[kind] {
		if keep(o) {
			out = append(out, o.Key)
		}
	}
	return out
}

// Get returns the cached object at key.
func (c *Cache) Get(key string) (*Cached, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, ok := c.all[key]
	return o, ok
}

// List returns the cached objects of kind, in namespace ns ("" for all).
func (c *Cache) List(kind, ns string) []*Cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Cached, 0, len(c.byKind[kind]))
	for _, o := range c.byKind[kind] {
		if ns == "" || o.Obj.GetObjectMeta().Namespace == ns {
			out = append(out, o)
		}
	}
	return out
}

// Clone returns a deep copy of obj.
func Clone[T manifests.Object](obj T) T {
	b, err := json.Marshal(obj)
	if err != nil {
		panic("clone: " + err.Error())
	}
	out := newOf(obj).(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic("clone: " + err.Error())
	}
	return out
}

func newOf(obj manifests.Object) manifests.Object {
	k, ok := manifests.LookupKind(obj.GetTypeMeta().Kind)
	if !ok {
		panic("clone: unknown kind " + obj.GetTypeMeta().Kind)
	}
	return k.New()
}

// InternStatus shares st's strings with the pods the cache holds; st must
// be the caller's alone (a status about to be written).
func (c *Cache) InternStatus(st *manifests.PodStatus) { c.intern.status(st) }
