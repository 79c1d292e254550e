package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/ownership"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

// assigner keeps the assignments bucket equal to the bound pods: one entry
// <node>.<namespace>.<pod> holding a manifests.Assignment: the pod as its
// node must run it, and the ConfigMaps and Secrets of its namespace it
// references (env valueFrom, envFrom, configMap, secret and projected
// volumes) — only those, so a node only ever receives what its pods use. A
// referenced object that is missing is simply left out: the node reports
// the pod's containers waiting (CreateContainerConfigError) until it
// appears, and a change to a referenced object re-queues the pods that
// reference it (refs), so their assignments follow.
type assigner struct {
	*shared
	assignments bus.Store         // ControlPlane.Assignments
	sops        secrets.Decrypter // ControlPlane.Sops
	queue       *workqueue.Queue
	mu          sync.Mutex
	// byPod holds, per pod key, its assignments on the bus: one, but for
	// the moment a pod moves between nodes (a slice: a map per pod costs
	// too much heap, docs/BENCHMARKS.md).
	byPod  map[string][]assignment
	synced chan struct{}
	// refs indexes the ConfigMaps and Secrets pods reference: object key
	// -> pod keys, and pod key -> the object keys it references.
	refs   map[string]map[string]bool
	podRef map[string][]string
}

// assignment is one assignment on the bus of a pod: its key is the
// node's name (shared by all the node's pods) and the pod's key.
type assignment struct {
	node string
	rev  uint64
	hash digest
}

func newAssigner(sh *shared, cp *ControlPlane) *assigner {
	return &assigner{shared: sh, assignments: cp.Assignments, sops: cp.Sops, queue: workqueue.New(), byPod: map[string][]assignment{}, synced: make(chan struct{}),
		refs: map[string]map[string]bool{}, podRef: map[string][]string{}}
}

// splitAssignmentKey maps <node>.<ns>.<name> to its node and
// Pod.<ns>.<name>.
func splitAssignmentKey(key string) (node, podKey string, ok bool) {
	node, rest, ok := cutAssignmentKey(key)
	if !ok {
		return "", "", false
	}
	return node, "Pod." + rest, true
}

// cutAssignmentKey cuts <node>.<ns>.<name> into its node and <ns>.<name>.
func cutAssignmentKey(key string) (node, rest string, ok bool) {
	node, rest, ok = strings.Cut(key, ".")
	return node, rest, ok && strings.Contains(rest, ".")
}

// assignmentKeyOf is the key of pod key pk's assignment on node.
func assignmentKeyOf(node, pk string) string {
	return node + "." + strings.TrimPrefix(pk, "Pod.")
}

// register routes the assigner its events: every pod's, those of the
// ConfigMaps and Secrets pods use (onObject), and a node's new key, which
// re-seals its pods' Secrets.
func (a *assigner) register(objects, nodes *cache.Cache) {
	objects.AddHandler(func(key string, old, cur manifests.Object) {
		if kindOf(old, cur) == "Pod" {
			a.queue.Add(key)
		}
	})
	objects.AddHandler(a.onObject(a.queue))
	nodes.AddHandler(func(key string, old, cur manifests.Object) {
		recipient := func(o manifests.Object) string {
			if o == nil {
				return ""
			}
			return o.GetObjectMeta().Annotations[manifests.AnnotationAgeRecipient]
		}
		if recipient(old) != recipient(cur) {
			for _, p := range objects.OnNode(key) {
				a.queue.Add(p.Key)
			}
		}
	})
}

func (a *assigner) watch(ctx context.Context, q *workqueue.Queue) error {
	ch, err := a.assignments.Watch(ctx, ">")
	if err != nil {
		return fmt.Errorf("watch assignments: %w", err)
	}
	synced := false
	for e := range ch {
		if e.Op == bus.OpSynced {
			if !synced {
				synced = true
				close(a.synced)
			}
			continue
		}
		node, pk, ok := splitAssignmentKey(e.Key)
		if !ok {
			continue
		}
		a.mu.Lock()
		node, pk = a.heldKeys(node, pk)
		as := slices.DeleteFunc(a.byPod[pk], func(x assignment) bool { return x.node == node })
		if e.Op != bus.OpDelete {
			as = append(as, assignment{node: node, rev: e.Revision, hash: assignmentDigest(e.Value)})
		}
		if len(as) == 0 {
			delete(a.byPod, pk)
		} else {
			a.byPod[pk] = slices.Clip(as)
		}
		a.mu.Unlock()
		if synced {
			q.Add(pk)
		}
	}
	return ctx.Err()
}

// PodReferences returns the names of the ConfigMaps and Secrets a pod
// references, each once, in order of first reference: through its
// containers' (and init containers') env valueFrom and envFrom, and its
// configMap, secret and projected volumes.
func PodReferences(spec *manifests.PodSpec) (configMaps, secrets []string) {
	seen := map[string]bool{}
	cm := func(name string) {
		if name != "" && !seen["c/"+name] {
			seen["c/"+name] = true
			configMaps = append(configMaps, name)
		}
	}
	sec := func(name string) {
		if name != "" && !seen["s/"+name] {
			seen["s/"+name] = true
			secrets = append(secrets, name)
		}
	}
	for _, list := range [][]manifests.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			for _, f := range c.EnvFrom {
				if f.ConfigMapRef != nil {
					cm(f.ConfigMapRef.Name)
				}
				if f.SecretRef != nil {
					sec(f.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					cm(r.Name)
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					sec(r.Name)
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			cm(v.ConfigMap.Name)
		}
		if v.Secret != nil {
			sec(v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					cm(s.ConfigMap.Name)
				}
				if s.Secret != nil {
					sec(s.Secret.Name)
				}
			}
		}
	}
	return configMaps, secrets
}

// refKeys returns the objects-bucket keys of what a pod references.
func refKeys(pod *manifests.Pod) []string {
	cms, secs := PodReferences(&pod.Spec)
	keys := make([]string, 0, len(cms)+len(secs))
	for _, n := range cms {
		keys = append(keys, manifests.Key("ConfigMap", pod.Namespace, n))
	}
	for _, n := range secs {
		keys = append(keys, manifests.Key("Secret", pod.Namespace, n))
	}
	return keys
}

// onObject keeps the reference index and queues the pods that reference a
// ConfigMap or Secret when it changes (created, updated or deleted).
func (a *assigner) onObject(q *workqueue.Queue) cache.Handler {
	return func(key string, old, cur manifests.Object) {
		obj := cur
		if obj == nil {
			obj = old
		}
		switch obj.GetTypeMeta().Kind {
		case "Pod":
			var keys []string
			if cur != nil {
				keys = refKeys(cur.(*manifests.Pod))
			}
			a.mu.Lock()
			for _, k := range a.podRef[key] {
				if m := a.refs[k]; m != nil {
					delete(m, key)
					if len(m) == 0 {
						delete(a.refs, k)
					}
				}
			}
			if len(keys) == 0 {
				delete(a.podRef, key)
			} else {
				a.podRef[key] = keys
			}
			for _, k := range keys {
				if a.refs[k] == nil {
					a.refs[k] = map[string]bool{}
				}
				a.refs[k][key] = true
			}
			a.mu.Unlock()
		case "Source": // its drift policy travels with its pods' assignments (drift.go)
			a.onSourceDrift(q, old, cur)
		case "ConfigMap", "Secret":
			a.mu.Lock()
			pods := make([]string, 0, len(a.refs[key]))
			for p := range a.refs[key] {
				pods = append(pods, p)
			}
			a.mu.Unlock()
			for _, p := range pods {
				q.Add(p)
			}
		}
	}
}

// assignmentOf is the assignment of a pod for its node: the pod without
// status or revision, and the ConfigMaps and Secrets it references that
// exist, in order of first reference, without server-set metadata.
func (a *assigner) assignmentOf(pod *manifests.Pod) ([]byte, error) {
	p := *pod // shallow: it is only encoded
	p.Status = manifests.PodStatus{}
	p.ResourceVersion = ""
	out := manifests.Assignment{Pod: p, Drift: ownership.PodDriftPolicy(a.objects, pod)}
	cms, secs := PodReferences(&pod.Spec)
	for _, n := range cms {
		if c, ok := a.objects.Get(manifests.Key("ConfigMap", pod.Namespace, n)); ok {
			cm := *c.Obj.(*manifests.ConfigMap)
			cm.ResourceVersion = ""
			out.ConfigMaps = append(out.ConfigMaps, cm)
		}
	}
	for _, n := range secs {
		if c, ok := a.objects.Get(manifests.Key("Secret", pod.Namespace, n)); ok {
			s, ok := a.decrypted(c.Obj.(*manifests.Secret)) // secrets.go
			if !ok {
				continue
			}
			s.ResourceVersion = ""
			out.Secrets = append(out.Secrets, s)
		}
	}
	if err := a.sealSecrets(&out, pod.Spec.NodeName); err != nil {
		// The pod waits, its Secrets reported missing, until its node
		// publishes a key.
		a.log.Warn("secrets withheld from a node", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode assignment of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return b, nil
}

func (a *assigner) reconcile(ctx context.Context, podKey string) error {
	var want string
	var value []byte
	if c, ok := a.objects.Get(podKey); ok {
		pod := c.Obj.(*manifests.Pod)
		if pod.Spec.NodeName != "" {
			want = manifests.AssignmentKey(pod.Spec.NodeName, pod.Namespace, pod.Name)
			var err error
			if value, err = a.assignmentOf(pod); err != nil {
				return err
			}
		}
	}
	a.mu.Lock()
	have := make(map[string]assignment, len(a.byPod[podKey]))
	for _, v := range a.byPod[podKey] {
		have[assignmentKeyOf(v.node, podKey)] = v
	}
	a.mu.Unlock()
	for k, v := range have {
		if k == want {
			continue
		}
		if err := a.assignments.Delete(ctx, k, v.rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("delete assignment %s: %w", k, err)
		}
	}
	if want == "" {
		return nil
	}
	if cur, ok := have[want]; ok {
		if cur.hash == assignmentDigest(value) {
			return nil
		}
		if _, err := a.assignments.Update(ctx, want, value, cur.rev); err != nil {
			return fmt.Errorf("update assignment %s: %w", want, err)
		}
		return nil
	}
	if _, err := a.assignments.Create(ctx, want, value); err != nil {
		return fmt.Errorf("create assignment %s: %w", want, err)
	}
	return nil
}

// onSourceDrift re-assigns the pods of a Source whose drift policy
// changed, so their nodes apply the new one.
func (a *assigner) onSourceDrift(q *workqueue.Queue, old, cur manifests.Object) {
	policy := func(o manifests.Object) string {
		if s, ok := o.(*manifests.Source); ok && s.Spec.Drift != nil {
			return manifests.Hash(s.Spec.Drift)
		}
		return ""
	}
	if policy(old) == policy(cur) {
		return
	}
	obj := cur
	if obj == nil {
		obj = old
	}
	name := obj.GetObjectMeta().Name
	for _, c := range a.objects.List("Pod", "") {
		if _, s := ownership.DeclaringChain(a.objects, c.Obj); s == name {
			q.Add(manifests.KeyOf(c.Obj))
		}
	}
}
