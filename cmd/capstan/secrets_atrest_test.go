//go:build !nodeonly

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/atrest"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// TestSecretValuesShownToAdminsOnly runs the CLI against a bus with
// identities and a control plane serving capstan.secrets.*: an admin sees
// a Secret's values and rotates the key; a viewer sees the Secret and its
// keys, every value hidden, and is refused the rotation.
func TestSecretValuesShownToAdminsOnly(t *testing.T) {
	const password = "pw-cli-4242"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := natsauthtest.Start(t)
	keys, err := atrest.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	store := atrest.New(b.ControlPlane.Objects, keys, nil)
	stop, err := store.Subscribe(ctx, b.ControlPlane.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })
	if err := b.ControlPlane.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	sec := &manifests.Secret{ObjectMeta: manifests.ObjectMeta{Name: "db", Namespace: "default"}, Type: "Opaque",
		Data: map[string][]byte{"password": []byte(password)}}
	if _, err := cache.CreateObject(ctx, store, sec); err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{}
	for _, role := range []string{natsauth.RoleAdmin, natsauth.RoleViewer} {
		configs[role] = filepath.Join(t.TempDir(), "config")
		if err := b.Config(t, role, "someone-"+role).Save(configs[role]); err != nil {
			t.Fatal(err)
		}
	}
	run := func(role string, args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := Run(ctx, append([]string{"--config", configs[role]}, args...), &out, &errb)
		return out.String(), errb.String(), err
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(password))

	out, stderr, err := run(natsauth.RoleAdmin, "get", "secret", "db", "-o", "yaml")
	if err != nil || !strings.Contains(out, "password: "+b64) || strings.Contains(stderr, "admins only") {
		t.Fatalf("admin get -o yaml: %v\n%s\nstderr: %s", err, out, stderr)
	}
	out, _, err = run(natsauth.RoleAdmin, "get", "secrets", "-o", "json")
	if err != nil || !strings.Contains(out, `"password": "`+b64+`"`) {
		t.Fatalf("admin get secrets -o json: %v\n%s", err, out)
	}

	start := time.Now()
	for _, args := range [][]string{{"get", "secret", "db", "-o", "yaml"}, {"get", "secrets", "-o", "json"}, {"describe", "secret", "db"}} {
		out, stderr, err := run(natsauth.RoleViewer, args...)
		if err != nil || strings.Contains(out, b64) || strings.Contains(out, password) || strings.Contains(out, "Y2Fwc3Rhbjpl") /* base64 of the prefix */ ||
			!strings.Contains(out, "password") || !strings.Contains(out, hiddenValue) {
			t.Fatalf("viewer %v: %v\n%s", args, err, out)
		}
		if args[0] == "get" && !strings.Contains(stderr, "shown to admins only") {
			t.Errorf("viewer %v: no note on stderr: %q", args, stderr)
		}
	}
	if out, _, err := run(natsauth.RoleViewer, "get", "secrets"); err != nil || !strings.Contains(out, "db ") || !strings.Contains(out, "Opaque") {
		t.Fatalf("viewer get secrets: %v\n%s", err, out)
	}
	if _, _, err := run(natsauth.RoleViewer, "secrets", "rotate-key"); err == nil || !strings.Contains(err.Error(), "only admins") {
		t.Fatalf("viewer rotate-key: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the viewer's refusals took %s: they waited for timeouts", d)
	}

	// capstan diff reads the cluster's values from the control plane, or
	// leaves them encrypted (and says so) when refused.
	for _, role := range []string{natsauth.RoleAdmin, natsauth.RoleViewer} {
		conn := b.Connect(t, role, "differ-"+role, natsbus.Options{})
		k, _ := manifests.LookupKind("Secret")
		current, err := listObjects(ctx, conn, k, "default", "")
		if err != nil || len(current) != 1 || !encryptedValues(current[0].(*manifests.Secret)) {
			t.Fatalf("%s lists %v, %v", role, current, err)
		}
		var errb bytes.Buffer
		got := (&globals{stderr: &errb}).clusterSecretValues(ctx, conn, current)
		plain := string(got[0].(*manifests.Secret).Data["password"]) == password
		if role == natsauth.RoleAdmin && (!plain || errb.Len() > 0) || role == natsauth.RoleViewer && (plain || !strings.Contains(errb.String(), "not compared")) {
			t.Errorf("diff as %s: plain text %v, stderr %q", role, plain, errb.String())
		}
	}

	old := keys.Current()
	out, _, err = run(natsauth.RoleAdmin, "secrets", "rotate-key")
	if err != nil || !strings.Contains(out, keys.Current()+" is current; 1 Secret(s) re-encrypted") || !strings.Contains(out, "old keys dropped: "+old) {
		t.Fatalf("admin rotate-key: %v\n%s", err, out)
	}
	if _, _, err := run(natsauth.RoleAdmin, "secret", "rotate-key"); err != nil {
		t.Fatalf("rotate-key under `secret`: %v", err)
	}
	if out, _, err := run(natsauth.RoleAdmin, "get", "secret", "db", "-o", "yaml"); err != nil || !strings.Contains(out, "password: "+b64) {
		t.Fatalf("after two rotations: %v\n%s", err, out)
	}
}

// capstan diff names the Secret keys that change, never their values, and
// leaves out of the comparison the values it could not read.
func TestDiffHidesSecretValues(t *testing.T) {
	secret := func(data map[string]string) *manifests.Secret {
		s := &manifests.Secret{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: manifests.ObjectMeta{Name: "db", Namespace: "default"}, Type: "Opaque", Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	declared := []manifests.Object{secret(map[string]string{"password": "new-pw", "user": "ada"})}

	// Read from the control plane: the changed value is named, hidden.
	changes, _, err := diffObjects(declared, []manifests.Object{secret(map[string]string{"password": "old-pw", "user": "ada"})}, nil, "", nil)
	if err != nil || len(changes) != 1 || len(changes[0].Fields) != 1 {
		t.Fatalf("changes %+v, %v", changes, err)
	}
	if f := changes[0].Fields[0]; f.Path != "data.password" || strings.Contains(f.Old+f.New, "cHc") || !strings.Contains(f.Old, hiddenValue) || !strings.Contains(f.New, hiddenValue) {
		t.Fatalf("field %+v", f)
	}

	// Encrypted (a viewer's diff): only the keys added or removed show.
	enc := secret(map[string]string{"password": atrest.Prefix + "k1:xxxxxxxxxxxxxxxxxxxxxxxxxxxx", "gone": atrest.Prefix + "k1:yyyyyyyyyyyyyyyyyyyyyyyyyyyyy"})
	changes, _, err = diffObjects(declared, []manifests.Object{enc}, nil, "", nil)
	if err != nil || len(changes) != 1 {
		t.Fatalf("changes %+v, %v", changes, err)
	}
	var paths []string
	for _, f := range changes[0].Fields {
		paths = append(paths, f.Path)
		if strings.Contains(f.Old+f.New, "xxxx") || strings.Contains(f.Old+f.New, "eXl5") {
			t.Errorf("a value shows: %+v", f)
		}
	}
	if strings.Join(paths, ",") != "data.gone,data.user" {
		t.Fatalf("fields %v, want data.gone and data.user", paths)
	}
	if _, _, err := diffObjects(declared, []manifests.Object{secret(map[string]string{"password": "new-pw", "user": "ada"})}, nil, "", nil); err != nil {
		t.Fatal(err)
	}
}
