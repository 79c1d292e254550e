package git

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// endpoint is a parsed repository URL, split into what is shown and what is
// dialled, with the credentials it carried held apart.
type endpoint struct {
	// display is the URL as shown in Spec, logs and errors: no userinfo
	// (an http(s) user name is often a token). An scp-like address is
	// shown as given: its "user@" is an ssh login name.
	display string
	// conn is the URL handed to go-git. It never holds a password; only an
	// ssh one holds a user name. Credentials travel in the AuthMethod,
	// so go-git's own error messages cannot echo them.
	conn string
	// protocol is go-git's: file, http, https, ssh or git.
	protocol string
	// local is the absolute filesystem path of a local repository (a path
	// or a file:// URL), empty otherwise.
	local string
	// hostPort is the ssh server's "host:port".
	hostPort string
	// user and password came from the URL's userinfo.
	user, password string
}

// parseEndpoint classifies raw the way go-git does: a URL with a scheme, an
// scp-like "user@host:path", or a local path.
func parseEndpoint(raw string) (endpoint, error) {
	if raw == "" {
		return endpoint{}, errors.New("no URL")
	}
	var ep endpoint
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			// url.Error repeats the whole URL, password included: keep
			// only its reason.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return endpoint{}, fmt.Errorf("parse URL %s: %w", stripUserinfo(raw), err)
		}
		if u.User != nil {
			ep.user = u.User.Username()
			ep.password, _ = u.User.Password()
		}
		shown := *u
		shown.User = nil
		ep.display = shown.String()
		conn := shown
		if u.User != nil && u.Scheme == "ssh" {
			// The ssh user names the account to log in as; it is no secret,
			// but it is kept out of display like all userinfo.
			conn.User = url.User(ep.user)
		}
		ep.conn = conn.String()
	} else {
		ep.conn, ep.display = raw, raw
	}

	te, err := transport.NewEndpoint(ep.conn)
	if err != nil {
		return endpoint{}, fmt.Errorf("parse URL %s: %w", ep.display, err)
	}
	ep.protocol = te.Protocol
	switch te.Protocol {
	case "file":
		abs, err := filepath.Abs(te.Path)
		if err != nil {
			return endpoint{}, fmt.Errorf("parse URL %s: %w", ep.display, err)
		}
		ep.local = abs
		// go-git runs git-upload-pack on a plain path; an absolute one does
		// not depend on the working directory of the moment.
		ep.conn = abs
	case "http", "https", "ssh", "git":
	default:
		return endpoint{}, fmt.Errorf("parse URL %s: unsupported protocol %q", ep.display, te.Protocol)
	}
	if te.Protocol == "ssh" {
		if ep.user == "" {
			ep.user = te.User
		}
		port := te.Port
		if port == 0 {
			port = 22
		}
		ep.hostPort = net.JoinHostPort(te.Host, strconv.Itoa(port))
	}
	return ep, nil
}

// userinfoRE matches the userinfo of a URL inside free text.
var userinfoRE = regexp.MustCompile(`(://)[^/@\s]*@`)

// stripUserinfo removes "user:password@" from every URL in s.
func stripUserinfo(s string) string {
	return userinfoRE.ReplaceAllString(s, "$1")
}

// redactor removes known secrets from text.
type redactor struct {
	secrets []string
}

func newRedactor(secrets ...string) *redactor {
	r := &redactor{}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		r.secrets = append(r.secrets, s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:])
	}
	return r
}

func (r *redactor) redact(s string) string {
	for _, secret := range r.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return stripUserinfo(s)
}

// wrap returns err with its text redacted. The result matches what err
// matches under errors.Is and errors.As, but has no Unwrap: a chain walker
// printing each link cannot reach the unredacted text.
func (r *redactor) wrap(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := r.redact(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
func (e *redactedError) As(target any) bool   { return errors.As(e.err, target) }
