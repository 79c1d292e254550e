// Package manifests is Capstan's object model: the Go types of the
// Kubernetes-shaped kinds (Namespace, Pod, ReplicaSet, Deployment, ConfigMap,
// Secret, Node, Source), their metadata, and small pure helpers on them
// (label selectors, resource quantities, object keys).
//
// It does no I/O and imports nothing else of Capstan's, so every other
// package can depend on it. Validation of user input lives in package schema;
// this package trusts the values it is given.
//
// The types are plain data: the zero value of each is a valid, empty object,
// and none is safe for concurrent mutation.
package manifests
