package webhook

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
)

// scpLike is git's "[user@]host:path" form of an ssh address.
var scpLike = regexp.MustCompile(`^(?:[^@/:]+@)?([^@/:]+):(.*)$`)

// RepositoryKey reduces a repository address to what identifies the
// repository, so that the addresses a forge sends (https clone URL, ssh
// URL, web page) and the one a source follows compare equal:
//
//   - the scheme, the user, the password and the port are dropped: a forge
//     serves one repository over https and ssh (on any port);
//   - "git@host:owner/repo" reads as host "host", path "owner/repo";
//   - the host and, for a remote, the path are lower-cased: forges treat
//     owner and repository names case-insensitively;
//   - a trailing "/", ".git" and "/.git" are dropped.
//
// A local path (or file:// URL) keeps its case and stays distinct from any
// remote. Two addresses of different repositories may rarely share a key
// (same host and path on different ports): the cost is one needless fetch.
func RepositoryKey(raw string) string {
	raw = strings.TrimSpace(raw)
	var host, p string
	local := false
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "?" + raw
		}
		host, p = u.Hostname(), u.Path
		local = u.Scheme == "file"
	} else if m := scpLike.FindStringSubmatch(raw); m != nil && !filepath.IsAbs(raw) {
		host, p = m[1], m[2]
	} else {
		p, local = raw, true
	}
	p = strings.TrimRight(p, "/")
	p = strings.TrimSuffix(p, ".git")
	p = strings.TrimRight(p, "/")
	if local {
		return "file:" + filepath.Clean("/"+p)
	}
	return strings.ToLower(host) + "/" + strings.ToLower(strings.TrimLeft(p, "/"))
}
