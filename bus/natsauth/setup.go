package natsauth

import (
	"fmt"
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
	return prepare(dataDir, hosts, false)
}

// PrepareCluster is Prepare for a member of a cluster: its configuration
// also secures the routes between the members (ClusterConfig), and its
// certificate, issued for hosts, serves on them. hosts must name every
// address its peers route to (natsbus.ServerOptions.Routes). The members
// share one trust: copy a first member's with CopyTrust before preparing
// the others.
func PrepareCluster(dataDir string, hosts []string) (*Setup, error) {
	return prepare(dataDir, hosts, true)
}

func prepare(dataDir string, hosts []string, cluster bool) (*Setup, error) {
	a, err := LoadOrCreateAuthority(filepath.Join(dataDir, "auth"))
	if err != nil {
		return nil, err
	}
	pki := PKI{Dir: filepath.Join(dataDir, "tls")}
	if err := pki.EnsureCA(); err != nil {
		return nil, err
	}
	if _, err := pki.ensureServerCert(hosts, cluster); err != nil {
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
	if cluster {
		conf += pki.ClusterConfig()
	}
	path := filepath.Join(busDir, "nats.conf")
	if err := writeFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return &Setup{Authority: a, PKI: pki, ConfigFile: path}, nil
}

// ClusterConfig is the configuration's cluster block: routes over TLS
// with the server's certificate, verified both ways against the bus's CA
// (nats-server requires and verifies the peer's certificate on routes
// whenever they have TLS). That is the route authorization: a server
// joins only with a certificate from this CA, which only a holder of the
// CA's key (<data>/tls/ca.key, shared by the members) can issue; a
// stranger's route is refused in the TLS handshake, before a byte of the
// cluster's traffic. The soliciting end also checks the peer's
// certificate names the host it dialed. Where to listen and whom to
// route to are natsbus.ServerOptions', which win over the file.
func (p PKI) ClusterConfig() string {
	return fmt.Sprintf("cluster: {\n  tls: {\n    cert_file: %q\n    key_file: %q\n    ca_file: %q\n    timeout: 5\n  }\n}\n",
		p.ServerCertPath(), p.ServerKeyPath(), p.CAPath())
}

// CopyTrust copies what the members of a cluster share from one data dir
// to another not prepared yet: the authority (<data>/auth: the operator,
// its accounts, signing keys and revocations) and the CA with its key
// (<data>/tls/ca.crt, ca.key). Each member then issues its own server
// certificate from that CA (PrepareCluster). It is for members on one
// machine, or copied by hand; a server joining over the network with a
// token needs the same material sent to it once its token is checked.
func CopyTrust(fromDataDir, toDataDir string) error {
	from, to := filepath.Join(fromDataDir, "auth"), filepath.Join(toDataDir, "auth")
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	var files [][2]string
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, [2]string{filepath.Join(from, e.Name()), filepath.Join(to, e.Name())})
		}
	}
	for _, f := range []string{CAFile, caKeyFile} {
		files = append(files, [2]string{filepath.Join(fromDataDir, "tls", f), filepath.Join(toDataDir, "tls", f)})
	}
	for _, f := range files {
		fi, err := os.Stat(f[0])
		if err != nil {
			return err
		}
		b, err := os.ReadFile(f[0])
		if err != nil {
			return err
		}
		if err := writeFile(f[1], b, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
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
