package natsauth

import (
	"fmt"
	"regexp"

	"github.com/nats-io/jwt/v2"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
)

// Roles of the identities on the bus.
const (
	// RoleControlPlane is the control plane itself: everything in the
	// account.
	RoleControlPlane = "control-plane"
	// RoleAdmin is a person with every right, issuing credentials too.
	RoleAdmin = "admin"
	// RoleOperator reads everything but Secret values, and may ask for
	// logs, exec and the Git write-back of scale and rollout undo.
	RoleOperator = "operator"
	// RoleViewer reads everything but Secret values.
	RoleViewer = "viewer"
	// RoleNode is one node daemon: its own assignments, status, Node
	// record and events, and what its data plane reads.
	RoleNode = "node"
	// RoleJoin is a join token's bootstrap user: it may only ask the
	// control plane for a node's credentials.
	RoleJoin = "join"
)

// Control subjects. Only the control plane subscribes to them; the
// server's permissions say who may publish.
const (
	SubjectJoin       = "capstan.join"
	SubjectAdmin      = "capstan.admin" // capstan.admin.<verb>
	SubjectGitWrite   = "capstan.git.write"
	SubjectRenew      = "capstan.renew" // any identity renewing its own credentials
	SubjectSecretsAll = "capstan.secrets.>"
	subjectLogs       = "capstan.logs"
	subjectExec       = "capstan.exec"
)

// Admin request verbs, published on capstan.admin.<verb>.
const (
	VerbTokenCreate       = "token.create"
	VerbCredentialsCreate = "credentials.create"
	VerbCredentialsRevoke = "credentials.revoke"
	VerbNodeRevoke        = "node.revoke"
	VerbRotateServerCert  = "server-cert.rotate"
	VerbRotateSigningKey  = "signing-key.rotate"
	VerbRetireSigningKeys = "signing-keys.retire"
)

// AdminSubject is the subject of an admin request.
func AdminSubject(verb string) string { return SubjectAdmin + "." + verb }

// validName is what an identity's name may be: one subject token, DNS
// label characters (node names already are).
var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// CheckName refuses a name that cannot be an identity's.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("name %q: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 63", name)
	}
	return nil
}

// InboxPrefix is where an identity's replies arrive: _INBOX.<name>, so
// no one else can subscribe to them.
func InboxPrefix(role, name string) string {
	if role == RoleJoin {
		return "_INBOX.join-" + name
	}
	return "_INBOX." + name
}

// Permissions returns what the NATS server lets an identity of role named
// name publish and subscribe to. Everything not listed is denied by the
// server.
func Permissions(role, name string) (jwt.Permissions, error) {
	var p jwt.Permissions
	inbox := InboxPrefix(role, name) + ".>"
	switch role {
	case RoleControlPlane:
		p.Pub.Allow.Add(">")
		p.Sub.Allow.Add(">")
	case RoleAdmin:
		// Everything a person may need, break-glass writes of objects
		// included (the orphan sweep removes what no source declares);
		// not what only the control plane writes, nor the streams' shape.
		p.Pub.Allow.Add(">")
		p.Pub.Deny.Add(adminDenied()...)
		p.Sub.Allow.Add(">")
	case RoleViewer, RoleOperator:
		p.Pub.Allow.Add(readSubjects...)
		p.Pub.Allow.Add(inbox, SubjectRenew) // a streamed reply's cancel; renewal
		p.Sub.Allow.Add(inbox)
		if role == RoleOperator {
			p.Pub.Allow.Add(SubjectGitWrite, subjectLogs+".*", subjectExec+".*")
		}
	case RoleNode:
		if err := CheckName(name); err != nil {
			return p, err
		}
		p.Pub.Allow.Add(nodePublish(name)...)
		p.Pub.Allow.Add(SubjectRenew)
		p.Sub.Allow.Add(inbox, subjectLogs+"."+name, subjectExec+"."+name,
			"_INBOX.*.*.*.cancel") // a client giving up a logs or exec stream
	case RoleJoin:
		p.Pub.Allow.Add(SubjectJoin)
		p.Sub.Allow.Add(inbox)
	default:
		return p, fmt.Errorf("unknown role %q", role)
	}
	return p, nil
}

// adminDenied is what even an admin may not publish: the audit stream
// (the history stays the control plane's), the assignments (the
// scheduler's), and any change to a stream's existence, shape or
// messages.
func adminDenied() []string {
	deny := []string{
		"capstan.audit.>",
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.MSG.DELETE.>",
	}
	for i := range natsbus.AssignmentShards {
		deny = append(deny, "$KV."+natsbus.AssignmentsBucket(i)+".>")
	}
	return deny
}

// readSubjects let a client bind to the buckets and streams and read them
// through ordered consumers and direct gets, and nothing else: no stream
// is created, changed or purged, no key written.
var readSubjects = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.*",
	"$JS.API.STREAM.NAMES",
	"$JS.API.STREAM.LIST",
	"$JS.API.CONSUMER.CREATE.>",
	"$JS.API.CONSUMER.DELETE.>",
	"$JS.API.CONSUMER.INFO.>",
	"$JS.API.CONSUMER.MSG.NEXT.>",
	"$JS.API.DIRECT.GET.>",
	"$JS.FC.>",
}

// nodePublish is what a node may publish: lookups of the buckets, watches
// and gets filtered to its own keys (the consumer's filter is part of the
// create subject, so the server checks it), writes of its own keys and
// events, and replies to the logs and exec requests it serves.
func nodePublish(node string) []string {
	shard := natsbus.AssignmentsBucket(natsbus.ShardOf(node, natsbus.AssignmentShards))
	own := []struct{ bucket, keys string }{
		{shard, node + ".>"},
		{bus.BucketStatus, node + ".>"},
		{bus.BucketNodes, node},
	}
	subs := []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.*",
		"$JS.FC.>",
		"$KV." + bus.BucketStatus + "." + node + ".>",
		"$KV." + bus.BucketNodes + "." + node,
		natsbus.EventsSubjectOf(node),
		"_INBOX.>", // streamed logs and exec output, to the requester's inbox
	}
	for _, o := range own {
		stream, subj := "KV_"+o.bucket, "$KV."+o.bucket+"."+o.keys
		subs = append(subs,
			"$JS.API.CONSUMER.CREATE."+stream+".*."+subj,
			"$JS.API.CONSUMER.DELETE."+stream+".*",
			"$JS.API.DIRECT.GET."+stream+"."+subj)
	}
	// The data plane watches the Services and their endpoints.
	for _, kind := range DataPlaneKinds {
		subs = append(subs,
			"$JS.API.CONSUMER.CREATE.KV_"+bus.BucketObjects+".*.$KV."+bus.BucketObjects+"."+kind+".>",
			"$JS.API.DIRECT.GET.KV_"+bus.BucketObjects+".$KV."+bus.BucketObjects+"."+kind+".>")
	}
	subs = append(subs, "$JS.API.CONSUMER.DELETE.KV_"+bus.BucketObjects+".*")
	return subs
}

// DataPlaneKinds are the kinds of the objects bucket a node's data plane
// reads.
var DataPlaneKinds = []string{"Service", "EndpointSlice"}
