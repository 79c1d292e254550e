package sops

import (
	"encoding/json"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/schema"
)

// ageKey makes an age identity for a test: the identity file's text and
// the recipient.
func newAgeKey(t *testing.T) (identity, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return "# created by the test\n" + id.String() + "\n", id.Recipient().String()
}

const plainSecret = `# the shop's database password
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  labels:
    app: shop # kept plain
type: Opaque
stringData:
  password: hunter2-plain
data:
  token: c2VjcmV0LXRva2Vu
`

func encryptSecret(t *testing.T, plain string, recipients ...string) string {
	t.Helper()
	enc, err := EncryptSecret([]byte(plain), recipients)
	if err != nil {
		t.Fatal(err)
	}
	return string(enc)
}

func TestSopsRoundTrip(t *testing.T) {
	idA, recA := newAgeKey(t)
	idB, recB := newAgeKey(t)
	idC, _ := newAgeKey(t)
	enc := encryptSecret(t, plainSecret, recA, recB)
	for _, leak := range []string{"hunter2-plain", "c2VjcmV0LXRva2Vu", "secret-token"} {
		if strings.Contains(enc, leak) {
			t.Fatalf("encrypted manifest holds %q:\n%s", leak, enc)
		}
	}
	for _, plain := range []string{"name: db", "namespace: shop", "app: shop # kept plain", "encrypted_regex: ^(data|stringData)$", "password: ENC[AES256_GCM,"} {
		if !strings.Contains(enc, plain) {
			t.Errorf("encrypted manifest lacks %q:\n%s", plain, enc)
		}
	}

	for name, id := range map[string]string{"first recipient": idA, "second recipient": idB} {
		t.Run(name, func(t *testing.T) {
			dec, err := NewDecrypter(id)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "secrets/db.yaml", Data: []byte(enc)}})
			if err != nil {
				t.Fatal(err)
			}
			sec := objs[0].(*manifests.Secret)
			if sec.SopsDocument() == nil || sec.SopsDocument().Document != enc || sec.Data != nil || sec.Namespace != "shop" || sec.Labels["app"] != "shop" {
				t.Fatalf("loaded secret %+v", sec)
			}
			// What is stored holds no plain text.
			stored, _ := json.Marshal(sec)
			if strings.Contains(string(stored), "hunter2-plain") || strings.Contains(string(stored), "secret-token") {
				t.Fatalf("stored form holds plain text: %s", stored)
			}
			plain, err := dec.Decrypt(sec)
			if err != nil {
				t.Fatal(err)
			}
			if string(plain.Data["password"]) != "hunter2-plain" || string(plain.Data["token"]) != "secret-token" || plain.Sops != nil || len(plain.Data) != 2 {
				t.Errorf("decrypted %q", plain.Data)
			}
			if sec.Data != nil {
				t.Error("Decrypt changed its argument")
			}
		})
	}

	t.Run("wrong key", func(t *testing.T) {
		dec, _ := NewDecrypter(idC)
		_, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "secrets/db.yaml", Data: []byte(enc)}})
		// Positioned at metadata.name (sops indents by 4: line 5, col 11).
		if err == nil || !strings.Contains(err.Error(), "secrets/db.yaml:5:11: metadata.name: Secret shop/db cannot be decrypted") || !strings.Contains(err.Error(), recA) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no key", func(t *testing.T) {
		var dec *Decrypter
		_, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "db.yaml", Data: []byte(enc)}})
		if err != nil {
			t.Fatalf("without a key the loader does not decrypt: %v", err)
		}
		if _, err := dec.Decrypt(&manifests.Secret{Sops: json.RawMessage(`{"format":"yaml","document":"x"}`)}); err != ErrNoKey {
			t.Fatalf("got %v, want ErrNoKey", err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		dec, _ := NewDecrypter(idA)
		// Swap the two ciphertexts: each value is bound to its path, and
		// the MAC to them all.
		lines := strings.Split(enc, "\n")
		var pw, tok int
		for i, l := range lines {
			switch {
			case strings.HasPrefix(l, "    password: ENC["):
				pw = i
			case strings.HasPrefix(l, "    token: ENC["):
				tok = i
			}
		}
		if pw == 0 || tok == 0 {
			t.Fatalf("layout:\n%s", enc)
		}
		_, pwVal, _ := strings.Cut(lines[pw], ": ")
		_, tokVal, _ := strings.Cut(lines[tok], ": ")
		lines[pw], lines[tok] = "    password: "+tokVal, "    token: "+pwVal
		_, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "db.yaml", Data: []byte(strings.Join(lines, "\n"))}})
		if err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestLoadSopsSecretsKeepsPositions(t *testing.T) {
	id, rec := newAgeKey(t)
	dec, _ := NewDecrypter(id)
	enc := encryptSecret(t, plainSecret, rec)
	// A multi-document file: a ConfigMap, the encrypted Secret, and a bad
	// Deployment whose error must point at its own line.
	file := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n" + enc + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: -1\n"
	_, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "all.yaml", Data: []byte(file)}})
	want := strings.Count(file[:strings.Index(file, "replicas: -1")], "\n") + 1
	if err == nil || !strings.Contains(err.Error(), "all.yaml:"+itoa(want)+":") {
		t.Fatalf("got %v, want an error at line %d", err, want)
	}
	if strings.Contains(err.Error(), "base64") || strings.Contains(err.Error(), "sops") {
		t.Errorf("the encrypted Secret was not accepted: %v", err)
	}

	good := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n" + enc
	objs, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "all.yaml", Data: []byte(good)}, {Path: "j.json", Data: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"plain"},"stringData":{"a":"b"}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 || objs[1].(*manifests.Secret).SopsDocument() == nil || objs[2].(*manifests.Secret).Sops != nil || string(objs[2].(*manifests.Secret).Data["a"]) != "b" {
		t.Fatalf("objects %v", objs)
	}
	if got := objs[1].(*manifests.Secret).SopsDocument().Document; got != enc {
		t.Errorf("document not kept as committed:\n%q\nwant\n%q", got, enc)
	}

	// Without the wrapper the schema refuses the ciphertext, and a sops
	// block on another kind is refused with it.
	if _, err := schema.Load([]manifests.File{{Path: "s.yaml", Data: []byte(enc)}}); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Errorf("schema.Load alone: %v", err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  version: 3.13.3\n"
	if _, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "c.yaml", Data: []byte(cm)}}); err == nil || !strings.Contains(err.Error(), `field "sops" is not allowed`) {
		t.Errorf("sops on a ConfigMap: %v", err)
	}
}

func TestSopsJSON(t *testing.T) {
	id, rec := newAgeKey(t)
	dec, _ := NewDecrypter(id)
	// JSON secrets as the sops CLI writes them: encrypted with the JSON
	// store. Build one from the YAML encryption's tree for the test.
	jsonPlain := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"j","namespace":"shop"},"stringData":{"k":"json-plain-value"}}`
	enc := encryptJSON(t, jsonPlain, rec)
	objs, err := LoadSecrets(schema.Load, dec)([]manifests.File{{Path: "j.json", Data: []byte(enc)}})
	if err != nil {
		t.Fatal(err)
	}
	sec := objs[0].(*manifests.Secret)
	if d := sec.SopsDocument(); d == nil || d.Format != "json" {
		t.Fatalf("%+v", sec)
	}
	plain, err := dec.Decrypt(sec)
	if err != nil || string(plain.Data["k"]) != "json-plain-value" {
		t.Fatalf("got %q, %v", plain.Data, err)
	}
}

func encryptJSON(t *testing.T, plain, recipient string) string {
	t.Helper()
	enc, err := encryptDocument("json", []byte(plain), []string{recipient})
	if err != nil {
		t.Fatal(err)
	}
	return string(enc)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
