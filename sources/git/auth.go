package git

import (
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// auth builds the AuthMethod for the URL's protocol from the options and
// the URL's userinfo, reading the credential files afresh so they can be
// rotated. It also returns the secrets read, for scrubbing error text. A nil
// AuthMethod means none (a local or anonymous remote; ssh-agent for ssh).
func (s *Source) auth() (transport.AuthMethod, []string, error) {
	switch s.ep.protocol {
	case "http", "https":
		user, pass := s.ep.user, s.ep.password
		if s.opts.PasswordFile != "" {
			p, err := readSecret(s.opts.PasswordFile)
			if err != nil {
				return nil, nil, fmt.Errorf("git %s: password file: %w", s.ep.display, err)
			}
			pass = p
			if user == "" {
				// Forges ignore the user name when the password is a token,
				// but it must not be empty.
				user = "git"
			}
		}
		if s.opts.Username != "" {
			user = s.opts.Username
		}
		if user == "" && pass == "" {
			return nil, nil, nil
		}
		return &http.BasicAuth{Username: user, Password: pass}, []string{pass}, nil

	case "ssh":
		user := s.ep.user
		if user == "" {
			user = "git"
		}
		var secrets []string
		var helper ssh.HostKeyCallbackHelper
		if s.opts.KnownHostsFile != "" {
			db, err := ssh.NewKnownHostsDb(s.opts.KnownHostsFile)
			if err != nil {
				return nil, nil, fmt.Errorf("git %s: known_hosts: %w", s.ep.display, err)
			}
			helper.HostKeyCallback = db.HostKeyCallback()
			// Offer only the key types known for this host, or the server
			// may present another type and fail the check.
			helper.HostKeyAlgorithms = db.HostKeyAlgorithms(s.ep.hostPort)
		}
		if s.opts.SSHKeyFile != "" {
			var passphrase string
			if s.opts.SSHKeyPassphraseFile != "" {
				p, err := readSecret(s.opts.SSHKeyPassphraseFile)
				if err != nil {
					return nil, nil, fmt.Errorf("git %s: ssh key passphrase file: %w", s.ep.display, err)
				}
				passphrase = p
				secrets = append(secrets, p)
			}
			keys, err := ssh.NewPublicKeysFromFile(user, s.opts.SSHKeyFile, passphrase)
			if err != nil {
				return nil, secrets, fmt.Errorf("git %s: ssh key %s: %w", s.ep.display, s.opts.SSHKeyFile, err)
			}
			keys.HostKeyCallbackHelper = helper
			return keys, secrets, nil
		}
		if s.ep.password != "" {
			return &ssh.Password{User: user, Password: s.ep.password, HostKeyCallbackHelper: helper}, nil, nil
		}
		if s.opts.KnownHostsFile != "" {
			// ssh-agent, with our host keys.
			agent, err := ssh.NewSSHAgentAuth(user)
			if err != nil {
				return nil, nil, fmt.Errorf("git %s: ssh-agent: %w", s.ep.display, err)
			}
			agent.HostKeyCallbackHelper = helper
			return agent, nil, nil
		}
		// go-git's default: ssh-agent and the default known_hosts files.
		return nil, nil, nil
	}
	return nil, nil, nil
}

// readSecret reads a credential file, dropping one trailing line ending.
func readSecret(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}
