// Package dir is a plain directory as a sources.Source, for development and
// for state kept outside git.
//
// A Source serves the manifest files (.yaml, .yml, .json, .cue) found under
// its directory, at any depth, with paths relative to it. Hidden files and
// directories (a name beginning with ".", such as .git) are skipped, and
// symbolic links to directories are not followed; symbolic links to files
// are read. A Revision's ID is "sha256:" and a hash over every manifest
// file's path and content, so an edit that changes nothing else (a touch, a
// rewrite with the same bytes, a change to a README) is no new revision. It
// has no author or committer, and its message is "directory <path>".
//
// Fetch reads and hashes every manifest file each time: a directory has no
// cheaper head to compare with known. That is fine for the tens or hundreds
// of files a deployment holds.
//
// Run signals a possible change at start, within about 50 ms of a file
// event anywhere under the directory (fsnotify, with a watch on every
// directory, added as new ones appear), and every Options.Interval (±10%
// jitter) in case events were lost, as they can be when the kernel's queue
// overflows. Trigger forces a signal.
//
// A Source's methods are safe for concurrent use. Run starts no goroutine
// that outlives it. The package does not decode manifests.
package dir
