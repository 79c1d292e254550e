package natsauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names of the bus's TLS material, in <dir>/tls.
const (
	CAFile         = "ca.crt"
	caKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity of what NewPKI creates. The server certificate is renewed by
// EnsureServerCert once less than serverRenewBefore of it is left.
const (
	caValidity        = 10 * 365 * 24 * time.Hour
	serverValidity    = 365 * 24 * time.Hour
	serverRenewBefore = 30 * 24 * time.Hour
)

// PKI is the bus's certificate authority and server certificate, kept as
// PEM files in one directory (0600 keys).
type PKI struct {
	Dir string
}

// CAPath and the others are the files' paths.
func (p PKI) CAPath() string         { return filepath.Join(p.Dir, CAFile) }
func (p PKI) ServerCertPath() string { return filepath.Join(p.Dir, ServerCertFile) }
func (p PKI) ServerKeyPath() string  { return filepath.Join(p.Dir, ServerKeyFile) }

// CAPEM returns the CA certificate.
func (p PKI) CAPEM() ([]byte, error) { return os.ReadFile(p.CAPath()) }

// EnsureCA creates the CA when its files are missing.
func (p PKI) EnsureCA() error {
	if _, err := os.Stat(p.CAPath()); err == nil {
		return nil
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Capstan bus CA", Organization: []string{"Capstan"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(p.Dir, caKeyFile), key); err != nil {
		return err
	}
	return writeFile(p.CAPath(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// EnsureServerCert makes sure the server certificate exists, names every
// host in hosts (IP addresses or DNS names) and has more than a month
// left; otherwise it issues a new one from the CA (a rotation). It reports
// whether it wrote one. The certificate file holds the CA after the
// server's certificate, so a client that pins the CA by hash (a join
// token) finds it in the handshake.
func (p PKI) EnsureServerCert(hosts []string) (bool, error) {
	return p.ensureServerCert(hosts, false)
}

// ensureServerCert is EnsureServerCert; forRoutes also renews a
// certificate that cannot authenticate as a client (one issued before
// clusters), which a route's soliciting end must.
func (p PKI) ensureServerCert(hosts []string, forRoutes bool) (bool, error) {
	if cert, err := p.serverCert(); err == nil && covers(cert, hosts) && time.Until(cert.NotAfter) > serverRenewBefore &&
		(!forRoutes || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
		return false, nil
	}
	return true, p.IssueServerCert(hosts)
}

// IssueServerCert issues a new server certificate for hosts, replacing the
// old one. It serves clients and also authenticates the server as a client
// of its peers, on the routes of a cluster.
func (p PKI) IssueServerCert(hosts []string) error {
	ca, caKey, err := p.loadCA()
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "capstan-bus", Organization: []string{"Capstan"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	if err := writeKey(p.ServerKeyPath(), key); err != nil {
		return err
	}
	return writeFile(p.ServerCertPath(), chain, 0o644)
}

// ServerTLS is the server's TLS configuration.
func (p PKI) ServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.ServerCertPath(), p.ServerKeyPath())
	if err != nil {
		return nil, fmt.Errorf("bus TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (p PKI) serverCert() (*x509.Certificate, error) {
	b, err := os.ReadFile(p.ServerCertPath())
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func (p PKI) loadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(p.CAPath())
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no certificate", p.CAPath())
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(filepath.Join(p.Dir, caKeyFile))
	if err != nil {
		return nil, nil, err
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, nil, fmt.Errorf("%s: no key", caKeyFile)
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// covers reports whether cert names every host.
func covers(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

// CAHash is the hex SHA-256 of a PEM certificate's DER bytes: what a join
// token pins.
func CAHash(caPEM []byte) (string, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

// ServerHosts lists the names a server certificate should carry for a
// server listening on host: loopback, this machine's name, and host
// itself unless it is a wildcard address, plus extra.
func ServerHosts(host string, extra ...string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		hosts = append(hosts, hn)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		hosts = append(hosts, host)
	}
	hosts = append(hosts, extra...)
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes data to path through a temporary file and a rename, so
// a reader never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
