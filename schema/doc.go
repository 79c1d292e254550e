// Package schema turns manifest files into validated, defaulted, typed
// objects: YAML, JSON or CUE files in; manifests.Object values or errors
// located at file:line:col out. It is the only gate through which desired
// state enters Capstan, so it refuses rather than guesses.
//
// # Loading
//
// [Load] takes the files of one revision and returns all their objects, or,
// if anything is wrong anywhere, no objects and an [*ErrorList] holding
// every problem found in every file. [LoadPaths] does the same for files
// and directories on disk, for `capstan validate`. Objects come back in the
// order of the files and of the documents within them, as their Go types
// (*manifests.Deployment, ...), with TypeMeta set.
//
// Files are recognized by their extension; other files are ignored:
//
//   - .yaml, .yml: a stream of documents separated by "---". Empty
//     documents are skipped.
//   - .json: one object. An empty file is skipped.
//   - .cue: a CUE file standing alone: it may import CUE's standard
//     library, but not other packages, and does not see other .cue files.
//     Each top-level regular field is one object, or a list of objects:
//     `web: {apiVersion: "apps/v1", kind: "Deployment", ...}` or
//     `objects: [{...}, {...}]`. Definitions (#Web), hidden fields (_x) and
//     let clauses are free for helpers, and are not objects. Quantities are
//     written as strings ("500m") in CUE.
//
// In any format, an object of kind List (apiVersion v1) stands for its
// items, as kubectl writes them.
//
// As Kubernetes does, a field set to null is treated as unset, and a
// resource quantity may be written as a YAML or JSON number (cpu: 2).
//
// # Validation
//
// Each object is unified with the closed CUE definition of its kind,
// embedded from cue/kinds.cue: the kinds Capstan reads from Git are
// Namespace, ConfigMap, Secret and Pod (v1), and ReplicaSet and Deployment
// (apps/v1). The definitions hold exactly the fields of the Go types, so a
// field Capstan does not support (tolerations, volumes, a typo such as
// imagee) is refused by name instead of silently dropped.
// Fields the server writes, such as status or metadata.uid, are refused
// too. Names, label keys and values, ports, enums and quantities are
// checked with Kubernetes' rules.
//
// Checks that span fields are done in Go after decoding: a controller's
// selector must match its template's labels, container names are unique,
// requests may not exceed limits, Secret data and ConfigMap binaryData are
// valid base64, a Recreate strategy has no rollingUpdate. Across files, an
// object (kind, namespace, name) may be declared only once.
//
// # Defaults
//
// The defaults Kubernetes applies are applied after validation, from
// cue/defaults.cue: metadata.namespace "default" for namespaced kinds;
// replicas 1; a Deployment's strategy RollingUpdate with maxSurge and
// maxUnavailable 25%, revisionHistoryLimit 10, progressDeadlineSeconds 600;
// a pod's restartPolicy Always and terminationGracePeriodSeconds 30; a
// port's protocol TCP; a Secret's type Opaque. A Secret's stringData is
// merged into data and cleared.
//
// One default differs on purpose: imagePullPolicy is IfNotPresent for
// every image, where Kubernetes uses Always for ":latest" and untagged
// images. Capstan nodes may have no registry to pull from, and a pull on
// every start would make a restart depend on the network.
//
// # Errors
//
// Each [Error] names the file, the line and column of the offending field's
// key (or of the nearest enclosing field, when a required one is missing),
// the field's path, and what is wrong:
//
//	apps/web.yaml:16:11: spec.template.spec.containers[0].imagee: field "imagee" is not allowed: Capstan does not know or support it
//	apps/web.yaml:6:3: spec.replicas: conflicting values "three" and int32 (mismatched types string and int)
//
// YAML syntax errors carry a line but no column. CUE reports a value error
// in a struct before an unknown field of the same struct; the loader lists
// unknown fields itself so that all of them are reported at once.
//
// # Concurrency and cost
//
// Load and LoadPaths are safe for concurrent use. A cue.Context is not, so
// the compiled schema is kept in a sync.Pool, one per goroutine in use;
// Load validates files in parallel, one worker per CPU. The documents of a
// single file are validated in order. Expect roughly a millisecond of CPU
// per small manifest; see BenchmarkLoad.
//
// The package does no I/O except in LoadPaths.
package schema
