package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Condition statuses.
const (
	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"
)

// FindCondition returns the condition of type t, or nil.
func FindCondition(conds []Condition, t string) *Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// SetCondition sets c in conds, keeping LastTransitionTime when the status
// did not change, and returns the new slice.
func SetCondition(conds []Condition, c Condition) []Condition {
	if old := FindCondition(conds, c.Type); old != nil {
		if old.Status == c.Status && c.LastTransitionTime == nil {
			c.LastTransitionTime = old.LastTransitionTime
		}
		if c.LastTransitionTime == nil {
			c.LastTransitionTime = Now()
		}
		*old = c
		return conds
	}
	if c.LastTransitionTime == nil {
		c.LastTransitionTime = Now()
	}
	return append(conds, c)
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(p *Pod) bool {
	c := FindCondition(p.Status.Conditions, "Ready")
	return c != nil && c.Status == ConditionTrue
}

// IsPodAvailable reports whether the pod has been ready for at least
// minReady at time now.
func IsPodAvailable(p *Pod, minReady time.Duration, now time.Time) bool {
	c := FindCondition(p.Status.Conditions, "Ready")
	if c == nil || c.Status != ConditionTrue {
		return false
	}
	if minReady <= 0 {
		return true
	}
	return c.LastTransitionTime != nil && !c.LastTransitionTime.Add(minReady).After(now)
}

// IsPodTerminal reports whether the pod has finished for good.
func IsPodTerminal(p *Pod) bool {
	return p.Status.Phase == PodSucceeded || p.Status.Phase == PodFailed
}

// IsNodeReady reports whether the node's Ready condition is True.
func IsNodeReady(n *Node) bool {
	c := FindCondition(n.Status.Conditions, "Ready")
	return c != nil && c.Status == ConditionTrue
}

// Hash returns a short, stable hash of v's JSON encoding.
func Hash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("manifests.Hash: " + err.Error()) // only plain data is hashed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// Int32 returns *p, or def when p is nil.
func Int32(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }

// UpdateCondition sets c, keeping the transition time when the status is
// unchanged and touching nothing when nothing changed.
func UpdateCondition(conds []Condition, c Condition) []Condition {
	if old := FindCondition(conds, c.Type); old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
		return conds
	}
	return SetCondition(conds, c)
}

// JoinName is "namespace/name", or the name alone for a cluster-scoped
// object: how people write an object's name.
func JoinName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
