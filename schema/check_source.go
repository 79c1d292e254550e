package schema

import (
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/capstan-io/capstan/manifests"
)

// checkSource checks what the Source definition cannot: one ref at most, a
// semver range that parses, an interval that is positive, a URL without
// credentials (they belong in the Secret named by secretRef), a path
// inside the repository, dependsOn naming other sources once each, and
// drift ignore paths that parse.
func checkSource(d doc, o *manifests.Source) []Error {
	var errs []Error
	s := &o.Spec
	if u, err := url.Parse(s.URL); err == nil && u.User != nil {
		errs = append(errs, d.errorf([]any{"spec", "url"}, "credentials in the URL are not allowed: put them in the Secret named by spec.secretRef"))
	}
	if r := s.Ref; r != nil {
		set := 0
		for _, v := range []string{r.Branch, r.Tag, r.SemVer, r.Commit} {
			if v != "" {
				set++
			}
		}
		if set > 1 {
			errs = append(errs, d.errorf([]any{"spec", "ref"}, "give one of branch, tag, semver or commit"))
		}
		if r.SemVer != "" {
			if _, err := semver.NewConstraint(r.SemVer); err != nil {
				errs = append(errs, d.errorf([]any{"spec", "ref", "semver"}, "invalid semver range %q: %v", r.SemVer, err))
			}
		}
	}
	if p := path.Clean(strings.TrimLeft(s.Path, "/")); p == ".." || strings.HasPrefix(p, "../") {
		errs = append(errs, d.errorf([]any{"spec", "path"}, "path %q leaves the repository", s.Path))
	}
	if s.Interval != "" {
		if iv, err := time.ParseDuration(s.Interval); err != nil || iv <= 0 {
			errs = append(errs, d.errorf([]any{"spec", "interval"}, "must be a positive duration such as 1m"))
		}
	}
	seen := map[string]bool{}
	for i, dep := range s.DependsOn {
		at := []any{"spec", "dependsOn", i, "name"}
		switch {
		case dep.Name == o.Name:
			errs = append(errs, d.errorf(at, "a source cannot depend on itself"))
		case seen[dep.Name]:
			errs = append(errs, d.errorf(at, "source %q is listed twice", dep.Name))
		}
		seen[dep.Name] = true
	}
	if dr := s.Drift; dr != nil {
		for i, ig := range dr.Ignore {
			for j, p := range ig.Paths {
				if _, err := manifests.ParseFieldPath(p); err != nil {
					errs = append(errs, d.errorf([]any{"spec", "drift", "ignore", i, "paths", j}, "%v", err))
				}
			}
		}
	}
	return errs
}

// checkNotifier checks that a Notifier has somewhere to send: a webhook
// URL for generic and slack (in address or in the secret's "address"
// key), an API URL for GitLab and Gitea, a token for the forges.
func checkNotifier(d doc, o *manifests.Notifier) []Error {
	var errs []Error
	s := &o.Spec
	addr := []any{"spec", "address"}
	switch s.Type {
	case manifests.NotifierGeneric, manifests.NotifierSlack:
		if s.Address == "" && s.SecretRef == nil {
			errs = append(errs, d.errorf([]any{"spec"}, "type %s needs an address, or a secretRef whose Secret holds one", s.Type))
		}
	case manifests.NotifierGitLab, manifests.NotifierGitea:
		if s.Address == "" {
			errs = append(errs, d.errorf([]any{"spec"}, "type %s needs the API address (such as https://%s.example.com/api/%s)", s.Type, s.Type, map[string]string{"gitlab": "v4", "gitea": "v1"}[s.Type]))
		}
	}
	switch s.Type {
	case manifests.NotifierGitHub, manifests.NotifierGitLab, manifests.NotifierGitea:
		if s.SecretRef == nil {
			errs = append(errs, d.errorf([]any{"spec"}, "type %s needs a secretRef whose Secret holds the API token (key \"token\")", s.Type))
		}
	}
	if s.Address != "" && s.Type != manifests.NotifierNATS {
		u, err := url.Parse(s.Address)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, d.errorf(addr, "must be an http or https URL"))
		case u.User != nil:
			errs = append(errs, d.errorf(addr, "credentials in the URL are not allowed: put them in the Secret named by spec.secretRef"))
		}
	}
	if s.Type == manifests.NotifierNATS && s.Address != "" {
		for _, tok := range strings.Split(s.Address, ".") {
			if tok == "" || strings.ContainsAny(tok, " *>\t") {
				errs = append(errs, d.errorf(addr, "must be a NATS subject prefix without wildcards, such as capstan.notify"))
				break
			}
		}
	}
	return errs
}
