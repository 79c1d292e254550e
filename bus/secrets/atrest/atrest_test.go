package atrest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/bus/storetest"
	"github.com/capstan-io/capstan/manifests"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T) (*Store, *memstore.Store) {
	t.Helper()
	keys, err := NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	mem := memstore.New()
	return New(mem, keys, nil), mem
}

// secretJSON is a Secret as the sync stores it (cache.Encode).
func secretJSON(t *testing.T, ns, name string, data map[string]string, stringData map[string]string) []byte {
	t.Helper()
	sec := manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: ns, UID: "u-1", Annotations: map[string]string{"capstan.io/source": "root"}},
		Type:       "Opaque", StringData: stringData}
	if data != nil {
		sec.Data = map[string][]byte{}
		for k, v := range data {
			sec.Data[k] = []byte(v)
		}
	}
	b, err := json.Marshal(&sec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leaks lists the plain texts (as given, and in base64) found in b.
func leaks(b []byte, plains ...string) []string {
	var out []string
	for _, p := range plains {
		for _, n := range []string{p, base64.StdEncoding.EncodeToString([]byte(p))} {
			if bytes.Contains(b, []byte(n)) {
				out = append(out, n)
			}
		}
	}
	return out
}

// The wrapper keeps the bus.Store contract: keys that are not Secrets pass
// through it unchanged.
func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) bus.Store { s, _ := newStore(t); return s })
}

func TestSecretValuesEncryptedAtRest(t *testing.T) {
	t.Parallel()
	s, mem := newStore(t)
	ctx := testCtx(t)
	key := "Secret.prod.db"
	plain := secretJSON(t, "prod", "db", map[string]string{"password": "hunter2-s3cret", "user": "ada-admin", "empty": ""},
		map[string]string{"token": "tok-9f8e7d", "none": ""})
	rev, err := s.Create(ctx, key, plain)
	if err != nil {
		t.Fatal(err)
	}

	raw, err := mem.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaks(raw.Value, "hunter2-s3cret", "ada-admin", "tok-9f8e7d"); len(l) > 0 {
		t.Fatalf("the stored Secret holds its values: %q\n%s", l, raw.Value)
	}
	var stored manifests.Secret
	if err := json.Unmarshal(raw.Value, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Name != "db" || stored.Annotations["capstan.io/source"] != "root" || len(stored.Data) != 3 || len(stored.StringData) != 2 {
		t.Fatalf("metadata or key names not readable: %+v", stored)
	}
	for name, v := range stored.Data {
		if !IsCiphertext(v) || valueKeyID(v) != s.Keys().Current() {
			t.Errorf("data.%s is not ciphertext under the current key: %q", name, v)
		}
	}
	if v := stored.StringData["token"]; !strings.HasPrefix(v, Prefix+s.Keys().Current()+":") {
		t.Errorf("stringData.token is not ciphertext: %q", v)
	}

	// Every read gives back the very bytes written.
	e, err := s.Get(ctx, key)
	if err != nil || !bytes.Equal(e.Value, plain) || e.Revision != rev {
		t.Fatalf("Get: %v %s, want %s", err, e.Value, plain)
	}
	list, err := s.List(ctx, "Secret.>")
	if err != nil || len(list) != 1 || !bytes.Equal(list[0].Value, plain) {
		t.Fatalf("List: %v %+v", err, list)
	}
	ch, err := s.Watch(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	if w := <-ch; w.Key != key || !bytes.Equal(w.Value, plain) {
		t.Fatalf("Watch: %s %s", w.Key, w.Value)
	}
	if w := <-ch; w.Op != bus.OpSynced {
		t.Fatalf("Watch: want OpSynced, got %+v", w)
	}
	changed := secretJSON(t, "prod", "db", map[string]string{"password": "new-pass-77"}, nil)
	if _, err := s.Update(ctx, key, changed, rev); err != nil {
		t.Fatal(err)
	}
	if w := <-ch; !bytes.Equal(w.Value, changed) {
		t.Fatalf("watched update %s", w.Value)
	}
	if _, err := s.Put(ctx, key, plain); err != nil {
		t.Fatal(err)
	}
	if w := <-ch; !bytes.Equal(w.Value, plain) {
		t.Fatalf("watched put %s", w.Value)
	}
	raw, _ = mem.Get(ctx, key)
	if l := leaks(raw.Value, "hunter2-s3cret", "new-pass-77"); len(l) > 0 {
		t.Fatalf("Put stored plain text %q", l)
	}

	// Objects of other kinds are not touched; a value at a Secret key
	// that is no Secret is refused rather than stored in the clear.
	cm := []byte(`{"kind":"ConfigMap","data":{"a":"plain"}}`)
	if _, err := s.Create(ctx, "ConfigMap.prod.c", cm); err != nil {
		t.Fatal(err)
	}
	if e, _ := mem.Get(ctx, "ConfigMap.prod.c"); !bytes.Equal(e.Value, cm) {
		t.Fatalf("a ConfigMap was changed: %s", e.Value)
	}
	if _, err := s.Create(ctx, "Secret.prod.x", []byte("not json")); err == nil {
		t.Fatal("a Secret key with a value that is no Secret was written")
	}
}

// A value moved to another Secret, or to another key of the same Secret,
// does not decrypt: it is left out (the sync writes it again).
func TestValuesCannotBeSwapped(t *testing.T) {
	t.Parallel()
	s, mem := newStore(t)
	ctx := testCtx(t)
	for _, name := range []string{"a", "b"} {
		if _, err := s.Create(ctx, "Secret.default."+name, secretJSON(t, "default", name, map[string]string{"k": "value-of-" + name, "j": "other-" + name}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	rawA, _ := mem.Get(ctx, "Secret.default.a")
	rawB, _ := mem.Get(ctx, "Secret.default.b")
	var a, b manifests.Secret
	_ = json.Unmarshal(rawA.Value, &a)
	_ = json.Unmarshal(rawB.Value, &b)
	b.Data["k"] = a.Data["k"] // from another Secret
	b.Data["x"] = b.Data["j"] // to another key
	delete(b.Data, "j")
	forged, _ := json.Marshal(&b)
	if _, err := mem.Put(ctx, "Secret.default.b", forged); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(ctx, "Secret.default.b")
	if err != nil {
		t.Fatal(err)
	}
	var got manifests.Secret
	_ = json.Unmarshal(e.Value, &got)
	if len(got.Data) != 0 {
		t.Fatalf("moved values decrypted: %q", got.Data)
	}
	o := s.openSecret("Secret.default.b", forged)
	if strings.Join(o.bad, ",") != "data.k,data.x" {
		t.Fatalf("bad values %v", o.bad)
	}
	// The whole object copied under another key does not open either.
	if _, err := mem.Put(ctx, "Secret.default.c", rawA.Value); err != nil {
		t.Fatal(err)
	}
	e, _ = s.Get(ctx, "Secret.default.c")
	if bytes.Contains(e.Value, []byte(base64.StdEncoding.EncodeToString([]byte("value-of-a")))) {
		t.Fatal("a Secret copied to another name decrypted")
	}
}

// A Secret an older Capstan wrote in plain text reads as it is, and
// Converge encrypts it without changing its plain text.
func TestPlainSecretsAreMigrated(t *testing.T) {
	t.Parallel()
	s, mem := newStore(t)
	ctx := testCtx(t)
	plain := secretJSON(t, "default", "old", map[string]string{"password": "legacy-pw"}, nil)
	sops := []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"sops","namespace":"default"},"sops":{"format":"yaml","document":"x: ENC[AES256_GCM,data:abc]"}}`)
	if _, err := mem.Create(ctx, "Secret.default.old", plain); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Create(ctx, "Secret.default.sops", sops); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx, "Secret.default.old"); !bytes.Equal(e.Value, plain) {
		t.Fatalf("a plain Secret reads %s", e.Value)
	}
	res, err := s.Converge(ctx)
	if err != nil || res.Reencrypted != 1 {
		t.Fatalf("Converge: %+v %v, want one Secret encrypted", res, err)
	}
	raw, _ := mem.Get(ctx, "Secret.default.old")
	if l := leaks(raw.Value, "legacy-pw"); len(l) > 0 {
		t.Fatalf("still plain after Converge: %s", raw.Value)
	}
	if e, _ := s.Get(ctx, "Secret.default.old"); !bytes.Equal(e.Value, plain) {
		t.Fatalf("plain text changed: %s", e.Value)
	}
	if e, _ := mem.Get(ctx, "Secret.default.sops"); !bytes.Equal(e.Value, sops) {
		t.Fatalf("a SOPS Secret (no values of its own) was rewritten: %s", e.Value)
	}
	if res, _ := s.Converge(ctx); res.Reencrypted != 0 {
		t.Fatalf("a second pass re-encrypted %d", res.Reencrypted)
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), KeyFileName)
	k, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	again, err := LoadKeyFile(path)
	if err != nil || again.Current() != k.Current() || len(again.IDs()) != 1 {
		t.Fatalf("reload: %v %v, want key %s", err, again.IDs(), k.Current())
	}
	// What one keyring encrypts, the reloaded one decrypts.
	mem := memstore.New()
	ctx := testCtx(t)
	plain := secretJSON(t, "default", "s", map[string]string{"a": "b"}, nil)
	if _, err := New(mem, k, nil).Create(ctx, "Secret.default.s", plain); err != nil {
		t.Fatal(err)
	}
	if e, _ := New(mem, again, nil).Get(ctx, "Secret.default.s"); !bytes.Equal(e.Value, plain) {
		t.Fatalf("the reloaded key does not decrypt: %s", e.Value)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key file others may read: %v", err)
	}
	for _, bad := range []string{"", "# only a comment\n", "k1\n", "k:1 " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n",
		"k1 c2hvcnQ=\n", "k1 " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\nk1 " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"} {
		p := filepath.Join(t.TempDir(), KeyFileName)
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyFile(p); err == nil {
			t.Errorf("key file %q accepted", bad)
		}
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), KeyFileName)
	keys, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mem := memstore.New()
	s := New(mem, keys, nil)
	ctx := testCtx(t)
	old := keys.Current()
	plains := map[string][]byte{}
	for _, name := range []string{"a", "b", "c"} {
		key := "Secret.default." + name
		plains[key] = secretJSON(t, "default", name, map[string]string{"v": "value-" + name}, map[string]string{"w": "w-" + name})
		if _, err := s.Create(ctx, key, plains[key]); err != nil {
			t.Fatal(err)
		}
	}
	// One Secret with a value no key opens is left alone.
	var broken manifests.Secret
	raw, _ := mem.Get(ctx, "Secret.default.c")
	_ = json.Unmarshal(raw.Value, &broken)
	broken.Data["v"] = []byte(Prefix + "lost:" + strings.Repeat("x", 40))
	bb, _ := json.Marshal(&broken)
	if _, err := mem.Put(ctx, "Secret.default.c", bb); err != nil {
		t.Fatal(err)
	}

	res, err := s.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// c's other value still uses the old key: it is kept.
	if res.Key == old || res.Reencrypted != 2 || strings.Join(res.Unreadable, ",") != "Secret.default.c" ||
		len(res.Dropped) != 0 || strings.Join(res.Kept, ",") != old {
		t.Fatalf("rotation %+v, want a new key, 2 re-encrypted, c unreadable, %s kept", res, old)
	}
	if file, _ := os.ReadFile(path); !strings.Contains(string(file), "\n"+old+" ") {
		t.Fatalf("the old key left the file while a value uses it:\n%s", file)
	}
	// Once nothing uses it (the sync rewrote c), the old key goes.
	if _, err := s.Put(ctx, "Secret.default.c", plains["Secret.default.c"]); err != nil {
		t.Fatal(err)
	}
	res2, err := s.Converge(ctx)
	if err != nil || strings.Join(res2.Dropped, ",") != old || res2.Reencrypted != 0 {
		t.Fatalf("converge %+v %v, want %s dropped", res2, err, old)
	}
	for _, name := range []string{"a", "b", "c"} {
		key := "Secret.default." + name
		raw, _ := mem.Get(ctx, key)
		ids, _ := keyIDs(raw.Value)
		for _, id := range ids {
			if id != res.Key {
				t.Errorf("%s keeps a value under %q", key, id)
			}
		}
		if e, _ := s.Get(ctx, key); !bytes.Equal(e.Value, plains[key]) {
			t.Errorf("%s reads %s after rotation", key, e.Value)
		}
	}
	file, _ := os.ReadFile(path)
	if strings.Contains(string(file), old+" ") || !strings.Contains(string(file), "\n"+res.Key+" ") {
		t.Fatalf("key file after rotation:\n%s", file)
	}
	reloaded, err := LoadKeyFile(path)
	if err != nil || strings.Join(reloaded.IDs(), ",") != res.Key {
		t.Fatalf("reloaded keys %v %v", reloaded.IDs(), err)
	}
}

// racing makes the first Update of a Secret lose to another writer.
type racing struct {
	bus.Store
	raced  atomic.Bool
	before func()
}

func (r *racing) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, "Secret.") && r.raced.CompareAndSwap(false, true) {
		r.before()
	}
	return r.Store.Update(ctx, key, value, rev)
}

// A rotation that loses a race with a writer retries from a fresh read:
// the writer's value is kept, under the new key.
func TestRotateRetriesAConflict(t *testing.T) {
	t.Parallel()
	keys, err := NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	mem := memstore.New()
	r := &racing{Store: mem}
	s := New(r, keys, nil)
	ctx := testCtx(t)
	key := "Secret.default.db"
	if _, err := s.Create(ctx, key, secretJSON(t, "default", "db", map[string]string{"p": "first"}, nil)); err != nil {
		t.Fatal(err)
	}
	// The other writer's value, stored under the old key.
	other := secretJSON(t, "default", "db", map[string]string{"p": "second"}, nil)
	sealed, err := s.seal(key, other)
	if err != nil {
		t.Fatal(err)
	}
	r.before = func() {
		if _, err := mem.Put(ctx, key, sealed); err != nil {
			t.Error(err)
		}
	}
	res, err := s.Rotate(ctx)
	if err != nil || res.Reencrypted != 1 || !r.raced.Load() {
		t.Fatalf("rotation %+v %v (raced %v)", res, err, r.raced.Load())
	}
	if e, _ := s.Get(ctx, key); !bytes.Equal(e.Value, other) {
		t.Fatalf("the racing write was lost: %s", e.Value)
	}
	raw, _ := mem.Get(ctx, key)
	if ids, _ := keyIDs(raw.Value); len(ids) != 1 || ids[0] != res.Key {
		t.Fatalf("value under %v, want %s", ids, res.Key)
	}
}

func TestWatchClosesOnCancel(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	ch, err := s.Watch(ctx, "Secret.>")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	storetest.Closes(t, ch)
}

func TestMayMatchSecrets(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{">": true, "*.default.x": true, "Secret.>": true, "Secret.default.db": true,
		"Pod.>": false, "Service.>": false, "Secrets.>": false} {
		if got := mayMatchSecrets(p); got != want {
			t.Errorf("mayMatchSecrets(%q) = %v", p, got)
		}
	}
}
