package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// KindInfo describes one kind: its apiVersions, whether it is namespaced,
// the plural and short names the CLI accepts, and a constructor.
type KindInfo struct {
	Kind        string
	APIVersions []string // the first is the preferred one
	Namespaced  bool
	// FromGit is false for kinds only Capstan itself writes (Node,
	// EndpointSlice).
	FromGit bool
	Names   []string // lower-case plural first, then singular and short names
	New     func() Object
}

var kinds = []KindInfo{
	{Kind: "Namespace", APIVersions: []string{"v1"}, FromGit: true, Names: []string{"namespaces", "namespace", "ns"}, New: func() Object { return &Namespace{} }},
	{Kind: "ConfigMap", APIVersions: []string{"v1"}, Namespaced: true, FromGit: true, Names: []string{"configmaps", "configmap", "cm"}, New: func() Object { return &ConfigMap{} }},
	{Kind: "Secret", APIVersions: []string{"v1"}, Namespaced: true, FromGit: true, Names: []string{"secrets", "secret"}, New: func() Object { return &Secret{} }},
	{Kind: "Pod", APIVersions: []string{"v1"}, Namespaced: true, FromGit: true, Names: []string{"pods", "pod", "po"}, New: func() Object { return &Pod{} }},
	{Kind: "ReplicaSet", APIVersions: []string{"apps/v1"}, Namespaced: true, FromGit: true, Names: []string{"replicasets", "replicaset", "rs"}, New: func() Object { return &ReplicaSet{} }},
	{Kind: "Deployment", APIVersions: []string{"apps/v1"}, Namespaced: true, FromGit: true, Names: []string{"deployments", "deployment", "deploy"}, New: func() Object { return &Deployment{} }},
	{Kind: "ReplicationController", APIVersions: []string{"v1"}, Namespaced: true, FromGit: true, Names: []string{"replicationcontrollers", "replicationcontroller", "rc"}, New: func() Object { return &ReplicationController{} }},
	{Kind: "StatefulSet", APIVersions: []string{"apps/v1"}, Namespaced: true, FromGit: true, Names: []string{"statefulsets", "statefulset", "sts"}, New: func() Object { return &StatefulSet{} }},
	{Kind: "DaemonSet", APIVersions: []string{"apps/v1"}, Namespaced: true, FromGit: true, Names: []string{"daemonsets", "daemonset", "ds"}, New: func() Object { return &DaemonSet{} }},
	{Kind: "Job", APIVersions: []string{"batch/v1"}, Namespaced: true, FromGit: true, Names: []string{"jobs", "job"}, New: func() Object { return &Job{} }},
	{Kind: "CronJob", APIVersions: []string{"batch/v1"}, Namespaced: true, FromGit: true, Names: []string{"cronjobs", "cronjob", "cj"}, New: func() Object { return &CronJob{} }},
	{Kind: "HorizontalPodAutoscaler", APIVersions: []string{"autoscaling/v2", "autoscaling/v1"}, Namespaced: true, FromGit: true, Names: []string{"horizontalpodautoscalers", "horizontalpodautoscaler", "hpa"}, New: func() Object { return &HorizontalPodAutoscaler{} }},
	{Kind: "Service", APIVersions: []string{"v1"}, Namespaced: true, FromGit: true, Names: []string{"services", "service", "svc"}, New: func() Object { return &Service{} }},
	{Kind: "EndpointSlice", APIVersions: []string{"discovery.k8s.io/v1"}, Namespaced: true, Names: []string{"endpointslices", "endpointslice", "endpoints", "ep"}, New: func() Object { return &EndpointSlice{} }},
	{Kind: "Node", APIVersions: []string{"v1"}, Names: []string{"nodes", "node", "no"}, New: func() Object { return &Node{} }},
	// Sources and Notifiers are declared in Git (cluster-scoped); the root
	// Source, given to `capstan up`, is written by Capstan.
	{Kind: "Source", APIVersions: []string{"capstan.io/v1"}, FromGit: true, Names: []string{"sources", "source", "src"}, New: func() Object { return &Source{} }},
	{Kind: "Notifier", APIVersions: []string{"capstan.io/v1"}, FromGit: true, Names: []string{"notifiers", "notifier"}, New: func() Object { return &Notifier{} }},
}

// Kinds returns every kind Capstan knows, in a stable order.
func Kinds() []KindInfo { return kinds }

// LookupKind finds a kind by its Kind name ("Deployment").
func LookupKind(kind string) (KindInfo, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// ResolveKind finds a kind by any name a user may type: "deployments",
// "deployment", "deploy", "Deployment".
func ResolveKind(name string) (KindInfo, bool) {
	n := strings.ToLower(name)
	for _, k := range kinds {
		if strings.ToLower(k.Kind) == n {
			return k, true
		}
		for _, alias := range k.Names {
			if alias == n {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// ClusterScope is the namespace segment of a cluster-scoped object's key.
const ClusterScope = "_"

// Key returns the objects-bucket key of an object: <Kind>.<namespace>.<name>,
// with "_" as the namespace of cluster-scoped kinds. Names may hold dots;
// kinds and namespaces never do, so the key splits unambiguously.
func Key(kind, namespace, name string) string {
	if namespace == "" {
		namespace = ClusterScope
	}
	return kind + "." + namespace + "." + name
}

// KeyOf returns the objects-bucket key of obj.
func KeyOf(obj Object) string {
	return Key(obj.GetTypeMeta().Kind, obj.GetObjectMeta().Namespace, obj.GetObjectMeta().Name)
}

// SplitKey splits an objects-bucket key into kind, namespace and name.
func SplitKey(key string) (kind, namespace, name string, err error) {
	parts := strings.SplitN(key, ".", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("malformed object key %q", key)
	}
	if parts[1] == ClusterScope {
		parts[1] = ""
	}
	return parts[0], parts[1], parts[2], nil
}

// Decode reads a JSON object of a known kind into its Go type.
func Decode(data []byte) (Object, error) {
	tm, ok := leadingTypeMeta(data)
	if !ok {
		if err := json.Unmarshal(data, &tm); err != nil {
			return nil, fmt.Errorf("decode object: %w", err)
		}
	}
	k, ok := LookupKind(tm.Kind)
	if !ok {
		return nil, fmt.Errorf("decode object: unknown kind %q", tm.Kind)
	}
	obj := k.New()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	return obj, nil
}

// leadingTypeMeta reads the kind of an object encoded as Capstan encodes
// objects, its TypeMeta first: `{"apiVersion":"v","kind":"K",...` or
// `{"kind":"K",...`. Anything else is not ok and is decoded in full; only
// a prefix at the very start is trusted, since "kind" keys also stand
// deeper (owner references). It spares every decode a second parse.
func leadingTypeMeta(data []byte) (TypeMeta, bool) {
	var tm TypeMeta
	rest, ok := bytes.CutPrefix(data, []byte(`{"apiVersion":"`))
	if ok {
		i := bytes.IndexAny(rest, `"\`)
		if i < 0 || rest[i] != '"' {
			return tm, false
		}
		tm.APIVersion, rest = string(rest[:i]), rest[i+1:]
		if rest, ok = bytes.CutPrefix(rest, []byte(`,"kind":"`)); !ok {
			return tm, false
		}
	} else if rest, ok = bytes.CutPrefix(data, []byte(`{"kind":"`)); !ok {
		return tm, false
	}
	i := bytes.IndexAny(rest, `"\`)
	if i < 0 || rest[i] != '"' {
		return tm, false
	}
	tm.Kind = string(rest[:i])
	return tm, true
}

// DecodeAs reads JSON into a new object of type T.
func DecodeAs[T any](data []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	return v, nil
}

// SetKind fills in the TypeMeta of obj from its Go type.
func SetKind(obj Object) {
	var kind string
	switch obj.(type) {
	case *Namespace:
		kind = "Namespace"
	case *ConfigMap:
		kind = "ConfigMap"
	case *Secret:
		kind = "Secret"
	case *Pod:
		kind = "Pod"
	case *ReplicaSet:
		kind = "ReplicaSet"
	case *Deployment:
		kind = "Deployment"
	case *ReplicationController:
		kind = "ReplicationController"
	case *StatefulSet:
		kind = "StatefulSet"
	case *DaemonSet:
		kind = "DaemonSet"
	case *Job:
		kind = "Job"
	case *CronJob:
		kind = "CronJob"
	case *HorizontalPodAutoscaler:
		kind = "HorizontalPodAutoscaler"
	case *Service:
		kind = "Service"
	case *EndpointSlice:
		kind = "EndpointSlice"
	case *Node:
		kind = "Node"
	case *Source:
		kind = "Source"
	case *Notifier:
		kind = "Notifier"
	}
	k, _ := LookupKind(kind)
	t := obj.GetTypeMeta()
	t.Kind = kind
	if t.APIVersion == "" && len(k.APIVersions) > 0 {
		t.APIVersion = k.APIVersions[0]
	}
}

// SortObjects sorts objects by kind order, namespace and name, so output and
// apply order are stable: namespaces and config before workloads.
func SortObjects(objs []Object) {
	order := map[string]int{}
	for i, k := range kinds {
		order[k.Kind] = i
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if oa, ob := order[a.GetTypeMeta().Kind], order[b.GetTypeMeta().Kind]; oa != ob {
			return oa < ob
		}
		if a.GetObjectMeta().Namespace != b.GetObjectMeta().Namespace {
			return a.GetObjectMeta().Namespace < b.GetObjectMeta().Namespace
		}
		return a.GetObjectMeta().Name < b.GetObjectMeta().Name
	})
}
