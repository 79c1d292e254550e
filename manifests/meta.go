package manifests

import (
	"fmt"
	"strings"
	"time"
)

// TypeMeta names the schema of an object, as in Kubernetes.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// GetTypeMeta returns the object's TypeMeta; it lets every kind satisfy Object.
func (t *TypeMeta) GetTypeMeta() *TypeMeta { return t }

// ObjectMeta is the metadata every object carries.
type ObjectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	UID               string            `json:"uid,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	CreationTimestamp *Time             `json:"creationTimestamp,omitempty"`
	DeletionTimestamp *Time             `json:"deletionTimestamp,omitempty"`
	// DeletionGracePeriodSeconds is the grace period a terminating
	// object's deletion gives it (a pod's, from its
	// terminationGracePeriodSeconds), set with DeletionTimestamp.
	DeletionGracePeriodSeconds *int64           `json:"deletionGracePeriodSeconds,omitempty"`
	OwnerReferences            []OwnerReference `json:"ownerReferences,omitempty"`
}

// GetObjectMeta returns the object's ObjectMeta; it lets every kind satisfy Object.
func (m *ObjectMeta) GetObjectMeta() *ObjectMeta { return m }

// Controller returns the owner reference marked as controller, or nil.
func (m *ObjectMeta) Controller() *OwnerReference {
	for i := range m.OwnerReferences {
		if m.OwnerReferences[i].Controller {
			return &m.OwnerReferences[i]
		}
	}
	return nil
}

// OwnerReference points from a derived object to the object that made it.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller,omitempty"`
}

// Time is a timestamp that marshals as RFC 3339 with second precision in UTC,
// like Kubernetes' metav1.Time.
type Time struct{ time.Time }

// NewTime returns t as a *Time.
func NewTime(t time.Time) *Time { return &Time{t.UTC().Truncate(time.Second)} }

// Now returns the current time as a *Time.
func Now() *Time { return NewTime(time.Now()) }

// MarshalJSON writes the time as an RFC 3339 string, or null when zero.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339) + `"`), nil
}

// UnmarshalJSON reads an RFC 3339 string or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" || s == `""` {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, strings.Trim(s, `"`))
	if err != nil {
		return fmt.Errorf("time %s: %w", s, err)
	}
	t.Time = v
	return nil
}

// Object is what every kind implements through its embedded TypeMeta and
// ObjectMeta.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetObjectMeta() *ObjectMeta
}

// Well-known labels and annotations.
const (
	// AnnotationSource names the source that declared an object.
	AnnotationSource = "capstan.io/source"
	// AnnotationPrune set to PruneDisabled on an object keeps it when its
	// source stops declaring it.
	AnnotationPrune = "capstan.io/prune"
	PruneDisabled   = "disabled"
	// AnnotationCommit is the Git commit that last changed an object's
	// declared content, set by the sync when it writes the object.
	AnnotationCommit = "capstan.io/revision"
	// AnnotationAppliedHash is the hash of the declared content last applied
	// by the sync; an unchanged hash means nothing to do.
	AnnotationAppliedHash = "capstan.io/applied-hash"
	// AnnotationRevision is a Deployment's rollout revision on its ReplicaSets.
	AnnotationRevision = "deployment.kubernetes.io/revision"
	// LabelPodTemplateHash keys a ReplicaSet (and its pods) by pod template.
	LabelPodTemplateHash = "pod-template-hash"
	// AnnotationAgeRecipient is a Node's age public key: the control plane
	// seals the Secrets it hands that node to it.
	AnnotationAgeRecipient = "capstan.io/age-recipient"
	// AnnotationReplicasOwner names the HorizontalPodAutoscaler that owns a
	// workload's spec.replicas: while it is set, the sync keeps the live
	// replica count instead of Git's.
	AnnotationReplicasOwner = "capstan.io/replicas-owner"
)

// ProtocolOf is a port's protocol as Kubernetes defaults it: TCP when
// empty, upper case.
func ProtocolOf(p string) string {
	if p == "" {
		return "TCP"
	}
	return strings.ToUpper(p)
}
