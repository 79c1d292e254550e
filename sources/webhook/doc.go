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
// A push names its ref in "ref" (refs/heads/<branch> or refs/tags/<tag>)
// and its repository in the repository (or GitLab's project) object. The
// generic body is optional JSON: {"ref": "refs/heads/main"} or {"branch":
// "main"}, {"url": "<repository>"}, and {"source": "<name>"} to trigger one
// source only; an empty body triggers every target. GitHub's and Gitea's form-encoded deliveries
// (payload=<json>) are accepted too.
//
// # Answers
//
//   - 200: a push to a watched branch; the matching targets were triggered.
//     Also the answer to GitHub's ping.
//   - 202: acknowledged and ignored: a push to another branch, tag or
//     repository, an event that is not a push. The body says why.
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
// # Repositories and refs
//
// The targets are every source Capstan runs: the root and the Sources
// declared in Git (SetTargets keeps them current). A push triggers the
// targets of its repository, compared by RepositoryKey over every address
// the payload gives (https and ssh clone URLs, web page), so scheme, user,
// port, a ".git" suffix, a trailing slash and case do not matter. A payload
// naming no repository, and a target with no URL (a directory), match any.
//
// Among those, a branch push triggers the targets following that branch.
// A Target without a Branch follows the repository's default branch (the
// git source's behaviour for an empty branch): a push matches when its ref
// is the default branch the payload names (repository.default_branch,
// project.default_branch), or, when the payload names none, always. A tag
// push triggers the targets following that tag or a semver range of tags.
// A target pinned to a commit is never triggered. A needless trigger
// costs one ls-remote.
//
// A Receiver is safe for concurrent use; Run starts no goroutine that
// outlives it.
package webhook
