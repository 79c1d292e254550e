package manifests

// Notifier sends the results of syncs, rollouts and drift somewhere
// people look: a webhook (generic JSON or Slack-compatible), a forge's
// commit statuses (GitHub, GitLab, Gitea), or a NATS subject. It is
// declared in Git, cluster-scoped; its secret lives in capstan-system.
type Notifier struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NotifierSpec `json:"spec"`
}

// Notifier types.
const (
	NotifierGeneric = "generic"
	NotifierSlack   = "slack"
	NotifierGitHub  = "github"
	NotifierGitLab  = "gitlab"
	NotifierGitea   = "gitea"
	NotifierNATS    = "nats"
)

// Notification event classes a Notifier subscribes to.
const (
	NotifySync    = "sync"
	NotifyRollout = "rollout"
	NotifyDrift   = "drift"
)

// NotifierSpec describes where notifications go.
type NotifierSpec struct {
	// Type is generic, slack, github, gitlab, gitea or nats.
	Type string `json:"type"`
	// Address is the webhook URL (generic, slack), the forge's API base
	// URL (github: https://api.github.com by default; gitlab:
	// https://gitlab.example/api/v4; gitea: https://gitea.example/api/v1),
	// or the subject prefix (nats: capstan.notify by default). A secret's
	// "address" key overrides it, for webhook URLs that are secrets.
	Address string `json:"address,omitempty"`
	// Repository is the forge repository commit statuses are written to:
	// owner/name (GitHub, Gitea) or the project's path or numeric id
	// (GitLab). Empty means derived from each source's URL.
	Repository string `json:"repository,omitempty"`
	// Channel is a Slack channel, for webhooks that allow overriding it.
	Channel string `json:"channel,omitempty"`
	// SecretRef names a Secret in capstan-system: "token" (forges, and a
	// bearer token for generic webhooks) and optionally "address".
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// Sources are the source names notified about; "*" (the default)
	// means every source.
	Sources []string `json:"sources,omitempty"`
	// Events are the classes sent: sync, rollout, drift (default all).
	Events []string `json:"events,omitempty"`
}
