package manifests

import "encoding/json"

// Namespace scopes namespaced objects.
type Namespace struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Status     NamespaceStatus `json:"status,omitempty"`
}

// NamespaceStatus is the observed state of a namespace.
type NamespaceStatus struct {
	Phase string `json:"phase,omitempty"`
}

// ConfigMap holds configuration data.
type ConfigMap struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
	Immutable  *bool             `json:"immutable,omitempty"`
}

// Secret holds secret data. Data values are base64 in YAML and JSON, as in
// Kubernetes; StringData is merged into Data by the loader.
type Secret struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	Immutable  *bool             `json:"immutable,omitempty"`
	// Sops is set on a Secret committed encrypted with SOPS: Data and
	// StringData are then empty, and the ciphertext lives only here, as a
	// SopsSecret in JSON (SopsDocument reads it; straight out of the
	// schema it is the document's own sops metadata block). The control
	// plane decrypts it only into the assignments of the nodes that run
	// pods using the Secret.
	Sops json.RawMessage `json:"sops,omitempty"`
}

// SopsDocument returns the encrypted document of a Secret committed with
// SOPS, or nil.
func (s *Secret) SopsDocument() *SopsSecret {
	if len(s.Sops) == 0 {
		return nil
	}
	var d SopsSecret
	if json.Unmarshal(s.Sops, &d) != nil || d.Document == "" {
		return nil
	}
	return &d
}

// SopsSecret is a Secret document as committed, encrypted with SOPS. It is
// kept whole because SOPS' message authentication code covers every value
// of the document in order.
type SopsSecret struct {
	// Format is "yaml" or "json", the format of Document.
	Format string `json:"format"`
	// Document is the document as committed: values encrypted,
	// "ENC[AES256_GCM,data:...,iv:...,tag:...,type:str]", and the sops
	// metadata block with the data key encrypted for each recipient.
	Document string `json:"document"`
}

// Pod is one or more containers run together on one node.
type Pod struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       PodSpec   `json:"spec"`
	Status     PodStatus `json:"status,omitempty"`
}

// PodTemplateSpec is the pod a controller makes copies of.
type PodTemplateSpec struct {
	ObjectMeta `json:"metadata,omitempty"`
	Spec       PodSpec `json:"spec"`
}

// Restart policies.
const (
	RestartAlways    = "Always"
	RestartOnFailure = "OnFailure"
	RestartNever     = "Never"
)

// PodSpec is the desired state of a pod.
type PodSpec struct {
	InitContainers                []Container       `json:"initContainers,omitempty"`
	Containers                    []Container       `json:"containers"`
	Volumes                       []Volume          `json:"volumes,omitempty"`
	RestartPolicy                 string            `json:"restartPolicy,omitempty"`
	NodeSelector                  map[string]string `json:"nodeSelector,omitempty"`
	NodeName                      string            `json:"nodeName,omitempty"`
	TerminationGracePeriodSeconds *int64            `json:"terminationGracePeriodSeconds,omitempty"`
	ActiveDeadlineSeconds         *int64            `json:"activeDeadlineSeconds,omitempty"`
	Hostname                      string            `json:"hostname,omitempty"`
	Subdomain                     string            `json:"subdomain,omitempty"`
	HostAliases                   []HostAlias       `json:"hostAliases,omitempty"`
}

// Container is one container of a pod.
type Container struct {
	Name            string               `json:"name"`
	Image           string               `json:"image"`
	Command         []string             `json:"command,omitempty"`
	Args            []string             `json:"args,omitempty"`
	WorkingDir      string               `json:"workingDir,omitempty"`
	Env             []EnvVar             `json:"env,omitempty"`
	EnvFrom         []EnvFromSource      `json:"envFrom,omitempty"`
	Ports           []ContainerPort      `json:"ports,omitempty"`
	Resources       ResourceRequirements `json:"resources,omitempty"`
	VolumeMounts    []VolumeMount        `json:"volumeMounts,omitempty"`
	LivenessProbe   *Probe               `json:"livenessProbe,omitempty"`
	ReadinessProbe  *Probe               `json:"readinessProbe,omitempty"`
	StartupProbe    *Probe               `json:"startupProbe,omitempty"`
	Lifecycle       *Lifecycle           `json:"lifecycle,omitempty"`
	ImagePullPolicy string               `json:"imagePullPolicy,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// ContainerPort is a port a container listens on, optionally published on
// the node.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

// ResourceRequirements holds requests (for scheduling) and limits (enforced
// by the runtime), keyed by "cpu" and "memory".
type ResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

// ResourceList maps a resource name to a quantity such as "250m" or "128Mi".
type ResourceList map[string]Quantity

// Pod phases.
const (
	PodPending   = "Pending"
	PodRunning   = "Running"
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
	PodUnknown   = "Unknown"
)

// PodStatus is what the node observed of a pod.
type PodStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	Conditions            []Condition       `json:"conditions,omitempty"`
	Message               string            `json:"message,omitempty"`
	Reason                string            `json:"reason,omitempty"`
	HostIP                string            `json:"hostIP,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	StartTime             *Time             `json:"startTime,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
	// ObservedAt is when the node last reported this status.
	ObservedAt *Time `json:"observedAt,omitempty"`
	// HostPorts (Capstan) lists where the pod's declared container ports
	// are published on its node: a given hostPort, or the one the runtime
	// picked for a container port without one.
	HostPorts []PublishedPort `json:"hostPorts,omitempty"`
	// Drift (Capstan) lists the changes its node found made to the pod's
	// containers outside Capstan (paused, limits changed, renamed,
	// replaced by hand): those present now, and those it corrected in the
	// last ten minutes. The control plane records each once as drift.
	Drift []ContainerDrift `json:"drift,omitempty"`
}

// ContainerDrift is one change made to a container outside Capstan, as
// its node found it (Capstan).
type ContainerDrift struct {
	Container string `json:"container"`
	// Field is what changed: state.paused, resources.limits.memory,
	// resources.limits.cpu, name, or instance (a container Capstan did
	// not create runs in its place).
	Field string `json:"field"`
	Found string `json:"found,omitempty"`
	Want  string `json:"want,omitempty"`
	// Action is corrected (the node put it back) or reported (the
	// source's drift mode is report: left as it is).
	Action string `json:"action"`
	// Time is when the node found it; with the container and field it
	// identifies the change.
	Time *Time `json:"time"`
}

// PublishedPort is one container port of a pod published on its node
// (Capstan): reachable at the node's address and HostPort.
type PublishedPort struct {
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // TCP or UDP
	HostPort      int32  `json:"hostPort"`
}

// ContainerStatus is the observed state of one container.
type ContainerStatus struct {
	Name         string         `json:"name"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastTerminationState,omitempty"`
	Ready        bool           `json:"ready"`
	RestartCount int32          `json:"restartCount"`
	Image        string         `json:"image"`
	ContainerID  string         `json:"containerID,omitempty"`
	Started      *bool          `json:"started,omitempty"`
}

// ContainerState holds at most one of its members.
type ContainerState struct {
	Waiting    *ContainerStateWaiting    `json:"waiting,omitempty"`
	Running    *ContainerStateRunning    `json:"running,omitempty"`
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateWaiting is a container not yet running.
type ContainerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ContainerStateRunning is a running container.
type ContainerStateRunning struct {
	StartedAt *Time `json:"startedAt,omitempty"`
}

// ContainerStateTerminated is a container that exited.
type ContainerStateTerminated struct {
	ExitCode   int32  `json:"exitCode"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	StartedAt  *Time  `json:"startedAt,omitempty"`
	FinishedAt *Time  `json:"finishedAt,omitempty"`
}

// Condition is a Kubernetes-style status condition.
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime *Time  `json:"lastTransitionTime,omitempty"`
	LastHeartbeatTime  *Time  `json:"lastHeartbeatTime,omitempty"`
	// LastUpdateTime is when a Deployment's Progressing condition last saw
	// progress: its progress deadline counts from it.
	LastUpdateTime *Time `json:"lastUpdateTime,omitempty"`
}

// LabelSelector selects objects by their labels.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one set-based selector term.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// ReplicaSet keeps a number of identical pods running.
type ReplicaSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ReplicaSetSpec   `json:"spec"`
	Status     ReplicaSetStatus `json:"status,omitempty"`
}

// ReplicaSetSpec is the desired state of a ReplicaSet.
type ReplicaSetSpec struct {
	Replicas        *int32          `json:"replicas,omitempty"`
	MinReadySeconds int32           `json:"minReadySeconds,omitempty"`
	Selector        *LabelSelector  `json:"selector"`
	Template        PodTemplateSpec `json:"template"`
}

// ReplicaSetStatus is the observed state of a ReplicaSet.
type ReplicaSetStatus struct {
	Replicas             int32 `json:"replicas"`
	FullyLabeledReplicas int32 `json:"fullyLabeledReplicas,omitempty"`
	ReadyReplicas        int32 `json:"readyReplicas,omitempty"`
	AvailableReplicas    int32 `json:"availableReplicas,omitempty"`
	ObservedGeneration   int64 `json:"observedGeneration,omitempty"`
}

// Deployment rolls pods out through ReplicaSets.
type Deployment struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       DeploymentSpec   `json:"spec"`
	Status     DeploymentStatus `json:"status,omitempty"`
}

// Deployment strategies.
const (
	RollingUpdateStrategy = "RollingUpdate"
	RecreateStrategy      = "Recreate"
)

// DeploymentSpec is the desired state of a Deployment.
type DeploymentSpec struct {
	Replicas                *int32             `json:"replicas,omitempty"`
	Selector                *LabelSelector     `json:"selector"`
	Template                PodTemplateSpec    `json:"template"`
	Strategy                DeploymentStrategy `json:"strategy,omitempty"`
	MinReadySeconds         int32              `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit    *int32             `json:"revisionHistoryLimit,omitempty"`
	Paused                  bool               `json:"paused,omitempty"`
	ProgressDeadlineSeconds *int32             `json:"progressDeadlineSeconds,omitempty"`
}

// DeploymentStrategy says how old pods are replaced by new ones.
type DeploymentStrategy struct {
	Type          string                   `json:"type,omitempty"`
	RollingUpdate *RollingUpdateDeployment `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDeployment bounds a rolling update.
type RollingUpdateDeployment struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// DeploymentStatus is the observed state of a Deployment.
type DeploymentStatus struct {
	ObservedGeneration  int64       `json:"observedGeneration,omitempty"`
	Replicas            int32       `json:"replicas,omitempty"`
	UpdatedReplicas     int32       `json:"updatedReplicas,omitempty"`
	ReadyReplicas       int32       `json:"readyReplicas,omitempty"`
	AvailableReplicas   int32       `json:"availableReplicas,omitempty"`
	UnavailableReplicas int32       `json:"unavailableReplicas,omitempty"`
	Conditions          []Condition `json:"conditions,omitempty"`
}

// Node is a host that runs pods. Nodes register themselves; they never come
// from Git.
type Node struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NodeSpec   `json:"spec,omitempty"`
	Status     NodeStatus `json:"status,omitempty"`
}

// NodeSpec is the desired state of a node.
type NodeSpec struct {
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// NodeStatus is what a node reports of itself.
type NodeStatus struct {
	Capacity    ResourceList   `json:"capacity,omitempty"`
	Allocatable ResourceList   `json:"allocatable,omitempty"`
	Conditions  []Condition    `json:"conditions,omitempty"`
	Addresses   []NodeAddress  `json:"addresses,omitempty"`
	NodeInfo    NodeSystemInfo `json:"nodeInfo,omitempty"`
}

// NodeAddress is one address of a node.
type NodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// NodeSystemInfo describes the node's software.
type NodeSystemInfo struct {
	OperatingSystem         string `json:"operatingSystem,omitempty"`
	Architecture            string `json:"architecture,omitempty"`
	ContainerRuntimeVersion string `json:"containerRuntimeVersion,omitempty"`
	KubeletVersion          string `json:"kubeletVersion,omitempty"`
}

// Source is where desired state comes from. The root source is given to
// `capstan up`/`server`; its status records what was applied.
type Source struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       SourceSpec   `json:"spec"`
	Status     SourceStatus `json:"status,omitempty"`
}

// SourceSpec describes a source. URL never holds credentials.
type SourceSpec struct {
	URL string `json:"url"`
	// Branch is the root source's branch (from `capstan up --branch`);
	// sources declared in Git use Ref.
	Branch    string                `json:"branch,omitempty"`
	Ref       *GitRef               `json:"ref,omitempty"`
	Path      string                `json:"path,omitempty"`
	Interval  string                `json:"interval,omitempty"`
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	DependsOn []SourceReference     `json:"dependsOn,omitempty"`
	Suspend   bool                  `json:"suspend,omitempty"`
	// Prune deletes objects the source no longer declares (default true).
	Prune  *bool        `json:"prune,omitempty"`
	Verify *VerifySpec  `json:"verify,omitempty"`
	Drift  *DriftPolicy `json:"drift,omitempty"`
}

// GitRef picks the commit a source follows: one of a branch, a tag, a
// semver range over tags, or a pinned commit.
type GitRef struct {
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	SemVer string `json:"semver,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// LocalObjectReference names an object in the same namespace (for a
// Source: a Secret in capstan-system).
type LocalObjectReference struct {
	Name string `json:"name"`
}

// SourceReference names another Source.
type SourceReference struct {
	Name string `json:"name"`
}

// VerifySpec is a source's commit signature policy.
type VerifySpec struct {
	// Mode is "head" (the commit applied must be signed by a trusted key)
	// or "all" (every commit since the last applied one must be).
	Mode string `json:"mode"`
	// SecretRef names a Secret whose values are trusted keys: OpenPGP
	// armored public keys and SSH public keys (authorized_keys lines).
	SecretRef LocalObjectReference `json:"secretRef"`
}

// DriftPolicy says what to do with live state changed behind Git's back.
type DriftPolicy struct {
	// Mode is "correct" (the default: put Git's state back and record it)
	// or "report" (record it, change nothing).
	Mode   string        `json:"mode,omitempty"`
	Ignore []DriftIgnore `json:"ignore,omitempty"`
}

// DriftIgnore names fields whose drift is ignored, for objects matching
// the optional kind, namespace and name.
type DriftIgnore struct {
	Kind      string   `json:"kind,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name,omitempty"`
	Paths     []string `json:"paths"` // JSON-pointer-like field paths: spec.replicas
}

// SourceStatus is the outcome of the source's latest sync attempts.
type SourceStatus struct {
	// Health is Ready, Progressing, Degraded or Failed, from the source's
	// objects (rollouts complete, jobs done, pods ready) and its last sync.
	Health            string      `json:"health,omitempty"`
	AppliedRevision   string      `json:"appliedRevision,omitempty"`
	AttemptedRevision string      `json:"attemptedRevision,omitempty"`
	LastError         string      `json:"lastError,omitempty"`
	LastSyncTime      *Time       `json:"lastSyncTime,omitempty"`
	Conditions        []Condition `json:"conditions,omitempty"`
	Objects           int         `json:"objects,omitempty"`
}

// File is one manifest file of a source revision: its slash-separated path
// relative to the source's root, and its bytes.
type File struct {
	Path string
	Data []byte
}

// Event is something that happened to an object, shown by `describe`.
type Event struct {
	Time      *Time  `json:"time"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Type      string `json:"type"` // Normal or Warning
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	Source    string `json:"source"` // the component that reported it
}

// AuditRecord is one entry of the audit stream: a sync attempt of a
// source, or an action that did not come from a sync (Action).
type AuditRecord struct {
	// Action is what the record is (ActionSync, ActionDrift, ...); empty
	// in records written before it existed, which are syncs.
	Action    string         `json:"action,omitempty"`
	Source    string         `json:"source"`
	Revision  string         `json:"revision"`
	Author    string         `json:"author,omitempty"`
	Committer string         `json:"committer,omitempty"`
	Message   string         `json:"message,omitempty"`
	CommitAt  *Time          `json:"commitTime,omitempty"`
	Time      *Time          `json:"time"`
	Result    string         `json:"result"` // Applied, Unchanged, Rejected, Failed
	Errors    []string       `json:"errors,omitempty"`
	Changes   []ObjectChange `json:"changes,omitempty"`
	// Signature is the commit signature check, for a source with a
	// signature policy.
	Signature *CommitSignature `json:"signature,omitempty"`
	// Actor is the identity that made a change not coming from a sync:
	// "admin:alice", "operator:bob", "node:n2", "control-plane".
	Actor string `json:"actor,omitempty"`
	// Subject is what a non-object action was about: the identity
	// credentials were issued to or revoked from, the node that joined.
	Subject string `json:"subject,omitempty"`
}

// Audit record actions.
const (
	ActionSync               = "sync"       // a sync attempt (or a source removed from Git)
	ActionWriteBack          = "write-back" // a commit written for scale or rollout undo
	ActionDrift              = "drift"      // live state changed behind Git's back, and what was done
	ActionCredentialsIssued  = "credentials-issued"
	ActionCredentialsRevoked = "credentials-revoked"
	ActionNodeJoin           = "node-join"
	ActionNodeRevoked        = "node-revoked"
)

// IsSync reports whether r records a sync attempt.
func (r *AuditRecord) IsSync() bool { return r.Action == "" || r.Action == ActionSync }

// Commit signature statuses.
const (
	SignatureVerified  = "verified"  // signed by a trusted key
	SignatureUnsigned  = "unsigned"  // no signature
	SignatureUntrusted = "untrusted" // signed, by a key the source does not trust
	SignatureInvalid   = "invalid"   // a signature that does not verify, or cannot be read
)

// CommitSignature is the outcome of checking a commit's signature.
type CommitSignature struct {
	Status string `json:"status"` // verified, unsigned, untrusted, invalid
	// Key is the signing key's fingerprint: an OpenPGP fingerprint (or key
	// ID when only that is known) in hex, or an SSH SHA256:... fingerprint.
	Key string `json:"key,omitempty"`
	// Signer is the key's identity: the OpenPGP user ID, or the SSH key's
	// comment.
	Signer string `json:"signer,omitempty"`
	// Commit is the commit checked, when it is not the revision itself
	// (with mode "all", the first commit that failed).
	Commit string `json:"commit,omitempty"`
}

// ObjectChange is one object created, updated or deleted by a sync.
type ObjectChange struct {
	Action    string   `json:"action"` // created, updated, deleted, kept (prune disabled)
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Fields    []string `json:"fields,omitempty"` // changed field paths, for updates
}

// PodStatusReport is what a node writes to the status bucket for one pod:
// the pod's uid (so a report for an older pod of the same name is never
// taken for the current one) and what the node observed.
type PodStatusReport struct {
	UID    string    `json:"uid"`
	Node   string    `json:"node"`
	Status PodStatus `json:"status"`
	// Usage is the pod's measured resource use, for autoscaling; it is not
	// part of the Pod's status.
	Usage *PodUsage `json:"usage,omitempty"`
	// Removed says the node has stopped and removed a terminating pod
	// (one with a deletionTimestamp): the control plane may now delete
	// the Pod object for good.
	Removed bool `json:"removed,omitempty"`
}

// PodUsage is a pod's resource use, summed over its containers.
type PodUsage struct {
	Time        *Time `json:"time"`
	CPUMilli    int64 `json:"cpuMilli"`
	MemoryBytes int64 `json:"memoryBytes"`
}

// Assignment is what a node is given for one pod: the pod, and only the
// ConfigMaps and Secrets it references.
//
// Secrets never travel in plain text: the control plane seals them with age
// to the node's own key (the Node's capstan.io/age-recipient annotation)
// into SealedSecrets, and the node opens them; Secrets is filled in only
// after the node has opened them. SecretsDigest changes when the sealed
// content does (the ciphertext changes at every sealing).
type Assignment struct {
	Pod           Pod         `json:"pod"`
	ConfigMaps    []ConfigMap `json:"configMaps,omitempty"`
	Secrets       []Secret    `json:"secrets,omitempty"`
	SealedSecrets []byte      `json:"sealedSecrets,omitempty"`
	SecretsDigest string      `json:"secretsDigest,omitempty"`
	// Drift is the drift policy of the pod's source for its containers;
	// nil corrects every change made outside Capstan.
	Drift *PodDriftPolicy `json:"drift,omitempty"`
}

// PodDriftPolicy is what a node does with a pod's containers changed
// outside Capstan: Mode "report" leaves them (the default corrects), and
// Ignore lists pod field paths, each also covering the fields under it
// (spec.containers[0].resources.limits), that are not drift at all.
type PodDriftPolicy struct {
	Mode   string   `json:"mode,omitempty"`
	Ignore []string `json:"ignore,omitempty"`
}

// AssignmentKey is the key of a pod's assignment (and of its status
// report): <node>.<namespace>.<name>.
func AssignmentKey(node, namespace, name string) string {
	return node + "." + namespace + "." + name
}
