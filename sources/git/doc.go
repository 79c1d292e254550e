// Package git is a git repository branch as a sources.Source.
//
// A Source follows one branch of one repository (Options.Branch, or the
// branch the remote's HEAD names) and serves the manifest files (.yaml,
// .yml, .json, .cue; hidden files and directories skipped) under one
// directory of it (Options.Path). A Revision's ID is the full commit hash,
// with the commit's author, committer and message.
//
// # Fetching
//
// Fetch lists the remote's refs first, as git ls-remote does: one round
// trip that transfers the ref advertisement and no objects. When the branch
// head is the revision the caller already has, Fetch returns
// sources.ErrUnchanged without going further. Otherwise it fetches the
// commit: with Options.CacheDir, into a bare mirror kept there, offering the
// previous head so only new objects are sent; without, shallow (depth 1)
// into memory, dropped once read. A commit already in the mirror (the branch
// pushed back to an earlier head) is not fetched again, and the revision
// read last is kept, so asking again for the current head (a periodic full
// resync passes no known revision) costs only the listing. A force-push to
// an unrelated history is followed like any other move. A local repository
// is read through the git CLI's git-upload-pack, as go-git's file transport
// does, so git must be installed to follow one.
//
// # Credentials
//
// Credentials come from files named in Options (read at each fetch, so they
// can be rotated) or from the URL. For https they are sent as basic auth; a
// token goes in the password file. For ssh a private key file is used, or
// ssh-agent without one. Host keys are always checked: against
// Options.KnownHostsFile, or else the files in $SSH_KNOWN_HOSTS, or else
// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts of the user Capstan runs
// as; an unknown host is an error.
//
// Credentials never leave the package: Spec().URL, log lines and error
// text carry the URL without its userinfo (an http(s) user name is often a
// token); an scp-like address (git@host:path) is shown as given. Errors still match their causes under
// errors.Is and errors.As, but a scrubbed error has no Unwrap method, so
// code walking the chain link by link cannot print the original text.
//
// # Writing
//
// Write commits an edit to the source's branch and pushes it with the
// same credentials, so that `capstan scale` and `rollout undo` need no
// credentials of their own: it clones the branch into a temporary
// directory, lets the caller edit files, commits as the caller's author,
// signs with the given Signer (LoadSigner reads an OpenPGP or SSH private
// key), and pushes, again on a fresh clone if the branch moved meanwhile.
// A source with a signature policy checks the new commit against its own
// trusted keys before the push, so a commit it would reject is never
// pushed (ErrWouldBeRejected); a push the remote refuses for want of
// rights is ErrNoWriteAccess.
//
// # Watching
//
// Run signals a possible change at start, every Options.Interval (±10%
// jitter), on Trigger, and, for a local repository (a path or file:// URL),
// within about 50 ms of the branch's ref moving: it watches the
// repository's HEAD, packed-refs and refs/heads directories with fsnotify.
// Git writes a ref to a lock file and renames it into place, so the
// directories are watched, not the files.
//
// # Concurrency
//
// A Source's methods are safe for concurrent use. Fetches are serialised,
// since they share the cache mirror; two Sources must not share a CacheDir
// subdirectory, which holds only if they differ in URL, branch or path. Run
// starts no goroutine that outlives it; Trigger never blocks.
//
// The package does not decode manifests, apply them, or retry: the caller
// does, with its own back-off.
package git
