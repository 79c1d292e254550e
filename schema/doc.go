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
// embedded from cue/kinds.cue. The kinds Capstan reads from Git are
// Namespace, ConfigMap, Secret, Pod, Service and ReplicationController (v1),
// ReplicaSet, Deployment, StatefulSet and DaemonSet (apps/v1), Job and
// CronJob (batch/v1), and HorizontalPodAutoscaler (autoscaling/v2, or
// autoscaling/v1). The definitions hold exactly the fields of the Go types,
// so a field Capstan does not support (tolerations, a volume type such as
// nfs, a container's own restartPolicy, a typo such as imagee) is refused
// by name instead of silently dropped. Fields the server writes, such as
// status or metadata.uid, are refused too. Names, label keys and values,
// ports, paths, file modes, enums and quantities are checked with
// Kubernetes' rules.
//
// Checks that span fields, or need Go, run after decoding, on an object
// that passed its definition:
//
//   - controllers: the selector matches the template's labels (a Job's
//     selector is optional: the controller makes one); strategies (no
//     rollingUpdate with Recreate or OnDelete, maxUnavailable and maxSurge
//     not both 0, percentages at most 100%); a Deployment's
//     progressDeadlineSeconds is more than minReadySeconds.
//   - pods: container names are unique across init and app containers;
//     requests do not exceed limits; port names are unique in a container.
//   - probes and lifecycle hooks have exactly one handler (exec, httpGet or
//     tcpSocket; exec, httpGet or sleep); a named port is a port of the
//     container; liveness and startup probes have successThreshold 1; a
//     sleep is not longer than terminationGracePeriodSeconds. Init
//     containers may have neither probes nor hooks (Kubernetes allows them
//     only on sidecars, which Capstan does not support).
//   - env: value and valueFrom exclude each other; valueFrom and envFrom
//     have exactly one source; a fieldRef names a field Kubernetes exposes
//     (metadata.name, metadata.namespace, metadata.uid,
//     metadata.labels['k'], metadata.annotations['k'], spec.nodeName,
//     spec.serviceAccountName, status.hostIP(s), status.podIP(s); a
//     downwardAPI volume takes metadata.* only, including whole labels and
//     annotations); a resourceFieldRef names a container of the pod and a
//     divisor Kubernetes allows.
//   - volumes: unique names, exactly one source each; every volumeMount
//     names a declared volume (or a StatefulSet's claim template);
//     mountPaths are unique in a container; item paths and subPaths are
//     relative and never leave the volume; a projected volume's paths are
//     unique.
//   - CronJob: the schedule parses with the parser the controller uses,
//     github.com/robfig/cron/v3's standard parser (five fields, or
//     @yearly, @monthly, @weekly, @daily, @hourly, @every <duration>), and
//     sets no TZ= or CRON_TZ= (spec.timeZone does that); timeZone loads
//     with time.LoadLocation, from the time zone database embedded in the
//     binary (time/tzdata), so validation does not depend on the host.
//   - HorizontalPodAutoscaler: metrics and behavior only in autoscaling/v2,
//     targetCPUUtilizationPercentage only in autoscaling/v1; a metric must
//     be the cpu Resource (any other type or resource is refused by name),
//     with averageUtilization for target type Utilization or averageValue
//     for AverageValue; maxReplicas is at least minReplicas.
//   - Service: type ClusterIP, NodePort or ExternalName (LoadBalancer is
//     refused by the definition, SCTP by name); ExternalName needs
//     externalName and no clusterIP, externalName is only for ExternalName;
//     ports are required unless headless (clusterIP None) or ExternalName,
//     named when more than one, unique by name and by port/protocol;
//     nodePort (30000-32767) only for NodePort and unique; clusterIP is "",
//     "None" or an IP address (whether it is inside the service range is
//     the allocator's check, shown on the Service's status), headless is
//     not allowed with NodePort; clusterIPs[0] equals clusterIP, at most
//     one address per family. Defaults: type ClusterIP, sessionAffinity
//     None (ClientIP is refused), protocol TCP, and, in Go, targetPort the
//     port.
//
// Across files, an object (kind, namespace, name) may be declared only
// once.
//
// # Defaults
//
// The defaults Kubernetes applies are applied after validation. Those that
// depend only on a field being absent come from cue/defaults.cue:
// metadata.namespace "default" for namespaced kinds; replicas 1
// (ReplicaSet, Deployment, ReplicationController, StatefulSet);
// revisionHistoryLimit 10 (Deployment, StatefulSet, DaemonSet); a Deployment's strategy RollingUpdate with maxSurge and
// maxUnavailable 25% and progressDeadlineSeconds 600; a StatefulSet's
// podManagementPolicy OrderedReady and updateStrategy RollingUpdate with
// partition 0; a DaemonSet's updateStrategy RollingUpdate with
// maxUnavailable 1 and maxSurge 0; a Job's backoffLimit 6, completionMode
// NonIndexed and suspend false; a CronJob's concurrencyPolicy Allow,
// suspend false, successfulJobsHistoryLimit 3 and failedJobsHistoryLimit 1
// (and its jobTemplate.spec gets a Job's defaults); an autoscaler's
// minReplicas 1; a pod's restartPolicy Always and
// terminationGracePeriodSeconds 30; a port's protocol TCP; the
// defaultMode 0644 of configMap, secret, downwardAPI and projected volumes;
// a Secret's type Opaque. A Secret's stringData is merged into data and
// cleared.
//
// The loader applies in Go those Kubernetes applies to zero values or that
// depend on other fields:
//
//   - probes: timeoutSeconds 1, periodSeconds 10, successThreshold 1,
//     failureThreshold 3 when unset or 0; an httpGet's path "/" and scheme
//     HTTP (in hooks too); a fieldRef's apiVersion v1.
//   - a ReplicationController's selector: the template's labels.
//   - a Job's parallelism and completions, exactly as Kubernetes: both 1
//     when both are unset; otherwise parallelism 1 when unset, and
//     completions left unset. A Job with parallelism set and completions
//     unset is a work queue: it is complete when one pod has succeeded and
//     the others have stopped. Capstan keeps that meaning rather than
//     defaulting completions to 1, which would turn a work queue into a
//     single run.
//   - an autoscaler with no target follows cpu at 80% utilization (v2:
//     one metric; v1: targetCPUUtilizationPercentage 80); a v2 autoscaler's
//     behavior gets stabilization windows of 0 s up and 300 s down. A v1
//     autoscaler has no behavior field: its controller uses the same
//     windows.
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
// single file are validated in order. BenchmarkLoad measures the cost per
// manifest (docs/BENCHMARKS.md).
//
// The package does no I/O except in LoadPaths.
package schema
