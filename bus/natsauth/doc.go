// Package natsauth is the bus's security: who may connect to NATS and
// what each identity may do there, enforced by the NATS server itself.
//
// An Authority is the root of trust of one Capstan installation: a NATS
// operator, the system account and Capstan's account, whose signing keys
// sign every user JWT (github.com/nats-io/jwt and nkeys). A PKI is the
// bus's CA and server certificate. Prepare creates both in a data dir at
// first start and writes the nats-server configuration that trusts them
// (operator mode, full account resolver, TLS), which the embedded server
// loads and an external cluster includes.
//
// Permissions lists, per role (control plane, admin, operator, viewer,
// node, join), the subjects an identity may publish and subscribe to; a
// node's are filtered to its own keys. A ClientConfig is what the CLI reads
// (bus URL, CA, credentials); a JoinToken is what a new node exchanges,
// once, for its own credentials (Join); Sign and Authority.VerifyRequest
// let the control plane know who sent a request. Service answers joins and
// the admin requests (tokens, credentials, revocations) in the control
// plane, pushing account changes to the servers (PushAccount).
//
// It does not decide what an identity's request may change in Capstan's
// objects: the server's permissions and the control plane's handlers do.
// Authority and Service are safe for concurrent use; errors never carry a
// seed, a JWT or a token.
package natsauth
