package secrets_test

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"

	"filippo.io/age"

	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
)

// fuzzIdentity is the node key of FuzzOpenSecrets; it protects nothing.
const fuzzIdentity = "AGE-SECRET-KEY-1HEV3JC7JTWHZL3F4UPCQW56MXVXJVHVKX5D29S7L95Y5AK4LM8CSN4F2MD"

// FuzzOpenSecrets decodes a fuzzed assignment as a node does and opens its
// sealed secrets with the node's key. With seal, plain (fuzzed too) is first
// sealed to that key in place of the assignment's own sealedSecrets, as
// anyone knowing the node's public key can. Open must not panic; on
// error it leaves the assignment as it was (no partial open); on success
// it clears sealedSecrets and sets secrets to exactly what was sealed,
// nothing else changing; what it opened seals and opens again the same.
func FuzzOpenSecrets(f *testing.F) {
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		f.Fatal(err)
	}
	recipient := id.Recipient().String()
	pod := manifests.Pod{}
	pod.Name, pod.Namespace, pod.UID = "web-1", "shop", "0b5e0b5e"
	pod.Spec.Containers = []manifests.Container{{Name: "web", Image: "nginx:1.27"}}
	cm := manifests.ConfigMap{Data: map[string]string{"app.conf": "port=80"}}
	cm.Name, cm.Namespace = "web", "shop"
	secret := manifests.Secret{Data: map[string][]byte{"password": []byte("hunter2")}, StringData: map[string]string{"token": "s3cr3t"}, Type: "Opaque"}
	secret.Name, secret.Namespace = "db", "shop"
	sealed := manifests.Assignment{Pod: pod, ConfigMaps: []manifests.ConfigMap{cm}, Secrets: []manifests.Secret{secret},
		Drift: &manifests.PodDriftPolicy{Mode: "report", Ignore: []string{"spec.containers[0].image"}}}
	if err := secrets.Seal(&sealed, recipient); err != nil {
		f.Fatal(err)
	}
	mixed := sealed
	mixed.Secrets = []manifests.Secret{{Data: map[string][]byte{"stale": []byte("x")}}}
	for _, a := range []manifests.Assignment{sealed, mixed, {Pod: pod, ConfigMaps: []manifests.ConfigMap{cm}}} {
		b, err := json.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte(nil), false)
	}
	plainSeeds := []string{
		`[{"metadata":{"name":"db","namespace":"shop"},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"}]`,
		`null`, `[]`, `{}`, `[{"metadata":{"name":"a"}},1]`, `[{"data":{"k":"not base64!"}}]`,
	}
	for _, p := range plainSeeds {
		f.Add([]byte(`{"pod":{"metadata":{"name":"p"}}}`), []byte(p), true)
	}

	f.Fuzz(func(t *testing.T, data, plain []byte, seal bool) {
		var a, before manifests.Assignment
		if json.Unmarshal(data, &a) != nil {
			return
		}
		if err := json.Unmarshal(data, &before); err != nil {
			t.Fatalf("decodes once, not twice: %v", err)
		}
		if seal {
			ct := ageSeal(t, recipient, plain)
			a.SealedSecrets, before.SealedSecrets = ct, bytes.Clone(ct)
		}
		err := secrets.Open(&a, id)
		if err != nil {
			if !reflect.DeepEqual(a, before) {
				t.Fatalf("a failed open changed the assignment: %v", err)
			}
			return
		}
		if a.SealedSecrets != nil {
			t.Fatal("opened, yet sealedSecrets kept")
		}
		if len(before.SealedSecrets) == 0 {
			if !reflect.DeepEqual(a, before) {
				t.Fatal("nothing sealed, yet the assignment changed")
			}
			return
		}
		// What was sealed, read on its own.
		r, err := age.Decrypt(bytes.NewReader(before.SealedSecrets), id)
		if err != nil {
			t.Fatalf("OpenSecrets opened what age does not: %v", err)
		}
		opened, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		var want []manifests.Secret
		if err := json.Unmarshal(opened, &want); err != nil {
			t.Fatalf("OpenSecrets accepted secrets that do not decode: %v", err)
		}
		if !reflect.DeepEqual(a.Secrets, want) {
			t.Fatalf("opened secrets are not those sealed:\n got %+v\nwant %+v", a.Secrets, want)
		}
		rest := a
		rest.Secrets, rest.SealedSecrets = before.Secrets, before.SealedSecrets
		if !reflect.DeepEqual(rest, before) {
			t.Fatal("opening changed more than secrets and sealedSecrets")
		}
		// Seal and open again: the same secrets, as JSON.
		again := manifests.Assignment{Secrets: a.Secrets}
		if err := secrets.Seal(&again, recipient); err != nil {
			t.Fatal(err)
		}
		if err := secrets.Open(&again, id); err != nil {
			t.Fatalf("resealed secrets do not open: %v", err)
		}
		if j1, j2 := mustJSON(t, a.Secrets), mustJSON(t, again.Secrets); !bytes.Equal(j1, j2) {
			t.Fatalf("seal and open changed the secrets:\n%s\n%s", j1, j2)
		}
	})
}

// ageSeal encrypts plain to recipient.
func ageSeal(t *testing.T, recipient string, plain []byte) []byte {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
