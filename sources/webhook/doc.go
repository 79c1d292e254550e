// Package webhook receives push notifications from Git forges and triggers
// the sources they concern, so a push is fetched at once instead of at the
// next poll. Polling stays the fallback: a lost or refused webhook delays a
// change until the next poll, it never loses one.
//
// # Endpoints
//
// A Receiver serves, on its own address, one POST endpoint per forge:
//
//	/hooks/github   X-GitHub-Event: push or ping; X-Hub-Signature-256:
//	                sha256=<hex HMAC-SHA256 of the body, keyed with the secret>
//	/hooks/gitlab   X-Gitlab-Event: Push Hook; X-Gitlab-Token: <the secret>
//	/hooks/gitea    X-Gitea-Event (or X-Forgejo-Event, X-Gogs-Event): push;
//	/hooks/forgejo  X-Gitea-Signature or X-Forgejo-Signature: <hex HMAC-SHA256>
//	/hooks/generic  Authorization: Bearer <the secret>, or
//	                X-Capstan-Signature: sha256=<hex HMAC-SHA256 of the body>
//
// A push names its branch in "ref" (refs/heads/<branch>). The generic body
// is optional JSON: {"ref": "refs/heads/main"} or {"branch": "main"}, and
// {"source": "<name>"} to trigger one source only; an empty body triggers
// every target. GitHub's and Gitea's form-encoded deliveries
// (payload=<json>) are accepted too.
//
// # Answers
//
//   - 200: a push to a watched branch; the matching targets were triggered.
//     Also the answer to GitHub's ping.
//   - 202: acknowledged and ignored: a push to another branch, a tag, an
//     event that is not a push. The body says why.
//   - 400: a body that is not the JSON the forge sends.
//   - 401: a missing or wrong signature or token. Nothing is triggered. It
//     is logged at most once a minute per remote address, so a scanner
//     cannot flood the log.
//   - 404, 405: another path, another method.
//   - 413: a body over Options.MaxBodyBytes (5 MiB by default).
//
// Signatures and tokens are compared in constant time. The secret is never
// logged nor echoed. A replayed delivery can only trigger a fetch of what
// the source already holds, which is harmless, so deliveries are not
// de-duplicated.
//
// # Branches
//
// A Target with a Branch is triggered by pushes to that branch only. A
// Target without one follows the repository's default branch (the git
// source's behaviour for an empty branch): a push matches when its ref is
// the default branch the payload names (repository.default_branch,
// project.default_branch), or, when the payload names none, always. A
// needless trigger costs one ls-remote.
//
// A Receiver is safe for concurrent use; Run starts no goroutine that
// outlives it.
package webhook
