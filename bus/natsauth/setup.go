package natsauth

import (
	"os"
	"path/filepath"
)

// Setup is a bus's trust material in a data dir: the authority in
// <data>/auth, the CA and server certificate in <data>/tls, and the
// server's configuration in <data>/bus/nats.conf (its account resolver in
// <data>/bus/jwt).
type Setup struct {
	Authority  *Authority
	PKI        PKI
	ConfigFile string
}

// Prepare creates what is missing of the trust material in dataDir (at
// first start: the operator, accounts and CA) and renews the server
// certificate when it does not name hosts or is near its end; it writes
// the server configuration afresh, with the account as it stands.
func Prepare(dataDir string, hosts []string) (*Setup, error) {
	a, err := LoadOrCreateAuthority(filepath.Join(dataDir, "auth"))
	if err != nil {
		return nil, err
	}
	pki := PKI{Dir: filepath.Join(dataDir, "tls")}
	if err := pki.EnsureCA(); err != nil {
		return nil, err
	}
	if _, err := pki.EnsureServerCert(hosts); err != nil {
		return nil, err
	}
	busDir := filepath.Join(dataDir, "bus")
	if err := os.MkdirAll(filepath.Join(busDir, "jwt"), 0o700); err != nil {
		return nil, err
	}
	conf, err := a.ServerConfig(pki, filepath.Join(busDir, "jwt"))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(busDir, "nats.conf")
	if err := writeFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return &Setup{Authority: a, PKI: pki, ConfigFile: path}, nil
}

// ClientConfig makes a client config for a new identity of role named
// name, for the bus at server.
func (s *Setup) ClientConfig(server, name, role string) (*ClientConfig, error) {
	creds, err := s.Authority.NewCreds(name, role, 0)
	if err != nil {
		return nil, err
	}
	ca, err := s.PKI.CAPEM()
	if err != nil {
		return nil, err
	}
	file, err := creds.File()
	if err != nil {
		return nil, err
	}
	return &ClientConfig{Server: server, Name: name, Role: role, CA: string(ca), Creds: string(file)}, nil
}
