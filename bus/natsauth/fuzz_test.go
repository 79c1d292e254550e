package natsauth

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// FuzzParseJoinToken: a join token is outside input (pasted on a command
// line); parsing never panics, and what parses is a join identity whose
// errors never quote the token.
func FuzzParseJoinToken(f *testing.F) {
	a, err := LoadOrCreateAuthority(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	boot, err := a.NewCreds("0123456789ab", RoleJoin, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	good := JoinToken{ID: "0123456789ab", Secret: randomString(32), CAHash: strings.Repeat("ab", 32), JWT: boot.JWT, Seed: string(boot.Seed)}.String()
	f.Add(good)
	f.Add(tokenPrefix)
	f.Add(tokenPrefix + "e30")
	f.Add(good[:len(good)/2])
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			if len(s) > 20 && strings.Contains(err.Error(), s) {
				t.Fatalf("the error quotes the token: %v", err)
			}
			return
		}
		uc, err := tok.Creds().Claims()
		if err != nil || RoleOf(uc) != RoleJoin {
			t.Fatalf("parsed a token whose user is not a join user: %v", err)
		}
	})
}

// FuzzParseCreds: a credentials file is outside input; parsing never
// panics, and what parses has a seed matching its JWT's key.
func FuzzParseCreds(f *testing.F) {
	a, err := LoadOrCreateAuthority(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	c, err := a.NewCreds("n1", RoleNode, 0)
	if err != nil {
		f.Fatal(err)
	}
	file, err := c.File()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCreds(b)
		if err != nil {
			return
		}
		kp, err := nkeys.FromSeed(c.Seed)
		if err != nil {
			t.Fatalf("parsed creds with a bad seed: %v", err)
		}
		pub, _ := kp.PublicKey()
		if k, err := c.PublicKey(); err != nil || k != pub {
			t.Fatalf("parsed creds whose seed is not the JWT's key")
		}
	})
}

// FuzzVerifyRequest: a signed request's headers are outside input;
// verification never panics and never accepts a request whose payload
// was changed after signing.
func FuzzVerifyRequest(f *testing.F) {
	a, err := LoadOrCreateAuthority(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	c, err := a.NewCreds("alice", RoleAdmin, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"name":"x"}`), []byte(`{"name":"y"}`), "")
	f.Add([]byte(`{}`), []byte(`{}`), "bad")
	f.Fuzz(func(t *testing.T, signed, sent []byte, sig string) {
		m := natsMsg(AdminSubject(VerbTokenCreate), signed)
		if err := Sign(m, c); err != nil {
			t.Fatal(err)
		}
		m.Data = sent
		if sig != "" {
			m.Header.Set(HeaderSignature, sig)
		}
		id, err := a.VerifyRequest(m)
		if err == nil && (string(signed) != string(sent) || sig != "") {
			t.Fatalf("accepted a changed request as %s", id)
		}
	})
}
