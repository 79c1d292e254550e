package ownership

import (
	"slices"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// SetReplicas sets a supported workload's spec.replicas.
func SetReplicas(obj manifests.Object, n int32) { setReplicasPtr(obj, &n) }

// withOwnedReplicas returns, when the live object cur is scaled by an
// autoscaler (it carries AnnotationReplicasOwner), a copy of the declared
// object with cur's replica count and that annotation: while an autoscaler
// owns a workload, Git's replica count is a starting point, not an
// override. The sync compares and writes that copy.
func withOwnedReplicas(declared, cur manifests.Object) (manifests.Object, bool) {
	owner := cur.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner]
	if owner == "" {
		return declared, false
	}
	n, ok := replicasOf(cur)
	if !ok {
		return declared, false
	}
	if n != nil {
		n = manifests.Ptr(*n)
	}
	out := cache.Clone(declared)
	m := out.GetObjectMeta()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[manifests.AnnotationReplicasOwner] = owner
	setReplicasPtr(out, n)
	return out, true
}

// withAllocated returns Git's Service with what the control plane
// allocated (cluster IPs, IP families, node ports) taken from cur where
// Git leaves those fields empty, so the sync neither undoes an allocation
// nor sees it as drift; ok is false when there is nothing to take.
func withAllocated(declared, cur manifests.Object) (manifests.Object, bool) {
	d, ok := declared.(*manifests.Service)
	c, ok2 := cur.(*manifests.Service)
	if !ok || !ok2 || d.Spec.Type == manifests.ServiceExternalName {
		return nil, false
	}
	out := cache.Clone(d)
	changed := false
	headless := d.Spec.ClusterIP == manifests.ClusterIPNone
	if !headless && d.Spec.ClusterIP == "" && c.Spec.ClusterIP != "" && c.Spec.ClusterIP != manifests.ClusterIPNone {
		out.Spec.ClusterIP = c.Spec.ClusterIP
		changed = true
	}
	if !headless && len(d.Spec.ClusterIPs) == 0 && len(c.Spec.ClusterIPs) > 0 && c.Spec.ClusterIPs[0] == out.Spec.ClusterIP {
		out.Spec.ClusterIPs = slices.Clone(c.Spec.ClusterIPs)
		changed = true
	}
	if !headless && len(d.Spec.IPFamilies) == 0 && len(c.Spec.IPFamilies) > 0 && out.Spec.ClusterIP == c.Spec.ClusterIP {
		out.Spec.IPFamilies = slices.Clone(c.Spec.IPFamilies)
		changed = true
	}
	if d.Spec.Type == manifests.ServiceNodePort && c.Spec.Type == manifests.ServiceNodePort {
		for i := range out.Spec.Ports {
			p := &out.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, q := range c.Spec.Ports {
				if q.Port == p.Port && manifests.ProtocolOf(q.Protocol) == manifests.ProtocolOf(p.Protocol) && q.NodePort != 0 {
					p.NodePort = q.NodePort
					changed = true
				}
			}
		}
	}
	return out, changed
}

// replicasOf is a scalable workload's spec.replicas, as it is (nil when
// unset).
func replicasOf(obj manifests.Object) (*int32, bool) {
	switch o := obj.(type) {
	case *manifests.Deployment:
		return o.Spec.Replicas, true
	case *manifests.ReplicaSet:
		return o.Spec.Replicas, true
	case *manifests.StatefulSet:
		return o.Spec.Replicas, true
	}
	return nil, false
}

// setReplicasPtr sets a scalable workload's spec.replicas to n.
func setReplicasPtr(obj manifests.Object, n *int32) {
	switch o := obj.(type) {
	case *manifests.Deployment:
		o.Spec.Replicas = n
	case *manifests.ReplicaSet:
		o.Spec.Replicas = n
	case *manifests.StatefulSet:
		o.Spec.Replicas = n
	}
}

// FieldOwner is one party besides Git that owns fields of a live object.
// Take returns the declared object with those fields taken from live, and
// whether it took any.
type FieldOwner struct {
	Name   string // who owns them
	Fields string // which fields, for people
	Take   func(declared, live manifests.Object) (manifests.Object, bool)
}

// Owners is the field ownership table the sync's apply, its drift report
// and capstan diff all read: a field listed here is not Git's to write
// once the live object has it.
var Owners = []FieldOwner{
	{Name: "HorizontalPodAutoscaler", Fields: "spec.replicas of its target, while annotated " + manifests.AnnotationReplicasOwner, Take: withOwnedReplicas},
	{Name: "service controller", Fields: "spec.clusterIP, clusterIPs, ipFamilies and ports[].nodePort that Git leaves empty", Take: withAllocated},
}
