// Package writeback is the Git write-back behind `capstan scale` and
// `capstan rollout undo`: imperative habits that keep Git the truth. They
// change nothing on the bus; they commit a change to the file that declares
// the object, in its source's repository, and the cluster follows through
// the sync like for any commit.
//
// # What it owns
//
//   - The protocol on the bus: a [Change] (the object, and the replica
//     count or the revision to roll back to, and who asks; never file
//     content) sent on [Subject], answered by a [Reply].
//   - The control plane's side, [Server]: it checks who signed a request
//     (operators and admins only), reads the object, its source and (for
//     undo) its ReplicaSets from the bus, plans the edit and the message
//     itself, and commits through sources/git's Write with the source's own
//     credentials and the control plane's signing key, then records the
//     write-back in the audit stream.
//   - The CLI's side: [Commit] asks the control plane ([Request]) for a
//     remote repository, or writes the commit itself to a local working
//     copy, or with [Options].Direct through a clone and a push with the
//     user's own credentials (the commit plumbing, commit.go).
//   - The YAML editor (yamledit.go): it finds the document declaring the
//     object and edits it through gopkg.in/yaml.v3's node API, writing back
//     only the lines of the fields that changed, so comments, layout and
//     the other documents of the file stay as they were.
//
// Refusals the user can act on are [UserError]s; the CLI prints them as
// "error: ..." and exits 1, the control plane sends them as the reply's
// error.
//
// # What it does not
//
// It holds no cobra commands, flags or printing (cmd/capstan does), and it
// decides nothing about the cluster: the sync applies the commit. It edits
// YAML only; an object declared in JSON or CUE is refused with the file to
// change by hand.
//
// # What it may import
//
// bus, bus/natsauth, bus/natsbus, manifests, sources and sources/git,
// go-git, nats.go and YAML libraries; of package reconciler, only the
// exported names it uses (GetObject, DeploymentHistory, RecordAction and
// their constants), never the controllers' internals. Never node or
// node/podman: it is linked into the control plane and the CLI, not into
// the node daemon (bin/capstan-node).
package writeback
