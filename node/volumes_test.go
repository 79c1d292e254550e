package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "vol")
	files := map[string]fileData{
		"a":         {data: []byte("1"), mode: 0o644},
		"sub/b.txt": {data: []byte("2"), mode: 0o600},
	}
	changed, err := writeAtomic(dir, files, 0o700)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "1" {
		t.Errorf("a = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "sub", "b.txt")); got != "2" {
		t.Errorf("sub/b.txt = %q", got)
	}
	if info, _ := os.Stat(filepath.Join(dir, "sub", "b.txt")); info.Mode().Perm() != 0o600 {
		t.Errorf("sub/b.txt mode %v, want 0600", info.Mode().Perm())
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", info.Mode().Perm())
	}
	if target, err := os.Readlink(filepath.Join(dir, "a")); err != nil || target != filepath.Join(dataLink, "a") {
		t.Errorf("a is not a link through ..data: %q, %v", target, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, dataLink))

	// The same content again: nothing changes.
	if changed, err := writeAtomic(dir, files, 0o700); err != nil || changed {
		t.Fatalf("same write: changed %v, %v", changed, err)
	}
	// A mode change alone is a change.
	files["a"] = fileData{data: []byte("1"), mode: 0o400}
	if changed, err := writeAtomic(dir, files, 0o700); err != nil || !changed {
		t.Fatalf("mode change: changed %v, %v", changed, err)
	}

	// New content, one file gone, one new: the old timestamped directory
	// and the stale link go.
	next := map[string]fileData{"a": {data: []byte("one"), mode: 0o644}, "c": {data: []byte("3"), mode: 0o644}}
	if _, err := writeAtomic(dir, next, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "one" {
		t.Errorf("a = %q after update", got)
	}
	if got := readFile(t, filepath.Join(dir, "c")); got != "3" {
		t.Errorf("c = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Errorf("sub still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old data dir %s still there: %v", first, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 4 { // ..<timestamp>, ..data, a, c
		t.Errorf("entries %q, want the data dir, ..data, a and c", names)
	}
}

// TestWriteAtomicReadersSeeWholeVersions reads two files of one volume
// while it is rewritten: they always come from one version.
func TestWriteAtomicReadersSeeWholeVersions(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "vol")
	version := func(n int) map[string]fileData {
		v := fmt.Appendf(nil, "v%d", n)
		return map[string]fileData{"x": {data: v, mode: 0o644}, "y": {data: v, mode: 0o644}}
	}
	if _, err := writeAtomic(dir, version(0), 0o755); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, torn atomic.Int64
	var tornMsg atomic.Value
	for range 2 {
		wg.Go(func() {
			data := filepath.Join(dir, dataLink)
			for !stop.Load() {
				// Resolve ..data once, as a process holding the directory
				// open would, and read both files through it.
				target, err := os.Readlink(data)
				if err != nil {
					continue
				}
				x, errx := os.ReadFile(filepath.Join(dir, target, "x"))
				y, erry := os.ReadFile(filepath.Join(dir, target, "y"))
				if errx != nil || erry != nil {
					continue // the old version was removed under us: retry
				}
				reads.Add(1)
				if string(x) != string(y) {
					torn.Add(1)
					tornMsg.Store(fmt.Sprintf("x=%q y=%q", x, y))
				}
			}
		})
	}
	for i := 1; i <= 200; i++ {
		if _, err := writeAtomic(dir, version(i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if torn.Load() > 0 {
		t.Fatalf("%d of %d reads saw a half-written version, e.g. %v", torn.Load(), reads.Load(), tornMsg.Load())
	}
	if got := readFile(t, filepath.Join(dir, "x")); got != "v200" {
		t.Errorf("x = %q, want v200", got)
	}
}

func TestProjectedFiles(t *testing.T) {
	t.Parallel()
	tru := true
	m := func(v int32) *int32 { return &v }
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "ns", UID: "u",
		Labels: map[string]string{"b": "2", "a": "1"}},
		Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "c",
			Resources: manifests.ResourceRequirements{Limits: manifests.ResourceList{"memory": "32Mi"}}}}}}
	objs := podObjects{
		configMaps: map[string]*manifests.ConfigMap{"cfg": {Data: map[string]string{"k1": "v1", "k2": "v2"}}},
		secrets:    map[string]*manifests.Secret{"sec": {Data: map[string][]byte{"pw": []byte("x")}}},
	}
	tests := []struct {
		name string
		v    manifests.Volume
		want map[string]string // path -> "content mode"
		err  string
	}{
		{name: "configMap, all keys, default mode",
			v:    manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "cfg"}}},
			want: map[string]string{"k1": "v1 644", "k2": "v2 644"}},
		{name: "configMap items with paths and modes",
			v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "cfg", DefaultMode: m(0o600),
				Items: []manifests.KeyToPath{{Key: "k1", Path: "dir/one"}, {Key: "k2", Path: "two", Mode: m(0o755)}}}}},
			want: map[string]string{"dir/one": "v1 600", "two": "v2 755"}},
		{name: "missing key", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "cfg",
			Items: []manifests.KeyToPath{{Key: "nope", Path: "x"}}}}},
			err: "volume v: configmap ns/cfg: references non-existent key nope"},
		{name: "escaping path", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "cfg",
			Items: []manifests.KeyToPath{{Key: "k1", Path: "a/../../x"}}}}},
			err: `volume v: configmap ns/cfg: item k1: path "a/../../x" must not contain '..'`},
		{name: "missing configMap", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "gone"}}},
			err: `volume v: configmap "gone" not found`},
		{name: "optional missing configMap is empty", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "gone", Optional: &tru}}},
			want: map[string]string{}},
		{name: "secret", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "sec"}}},
			want: map[string]string{"pw": "x 644"}},
		{name: "missing secret", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{Secret: &manifests.SecretVolumeSource{SecretName: "vault"}}},
			err: `volume v: secret "vault" not found`},
		{name: "downwardAPI", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{DownwardAPI: &manifests.DownwardAPIVolumeSource{Items: []manifests.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.name"}},
			{Path: "labels", FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "mem", ResourceFieldRef: &manifests.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: "1Mi"}},
		}}}},
			want: map[string]string{"name": "p 644", "labels": "a=\"1\"\nb=\"2\" 644", "mem": "32 644"}},
		{name: "downwardAPI has no status fields", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{DownwardAPI: &manifests.DownwardAPIVolumeSource{Items: []manifests.DownwardAPIVolumeFile{
			{Path: "ip", FieldRef: &manifests.ObjectFieldSelector{FieldPath: "status.podIP"}}}}}},
			err: `unsupported field path "status.podIP"`},
		{name: "projected", v: manifests.Volume{Name: "v", VolumeSource: manifests.VolumeSource{Projected: &manifests.ProjectedVolumeSource{DefaultMode: m(0o640), Sources: []manifests.VolumeProjection{
			{ConfigMap: &manifests.ConfigMapProjection{Name: "cfg", Items: []manifests.KeyToPath{{Key: "k1", Path: "cfg/k1"}}}},
			{Secret: &manifests.SecretProjection{Name: "sec"}},
			{Secret: &manifests.SecretProjection{Name: "vault", Optional: &tru}},
			{DownwardAPI: &manifests.DownwardAPIProjection{Items: []manifests.DownwardAPIVolumeFile{{Path: "ns", FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
		}}}},
			want: map[string]string{"cfg/k1": "v1 640", "pw": "x 640", "ns": "ns 640"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files, err := projectedFiles(pod, &tc.v, objs, downward{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for p, f := range files {
				got[p] = fmt.Sprintf("%s %o", f.data, f.mode)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("files = %v\nwant    %v", got, tc.want)
			}
		})
	}
}

func TestCheckHostPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, typ string
		ok        bool
	}{
		{filepath.Join(dir, "missing"), "", true},
		{dir, "Directory", true},
		{file, "Directory", false},
		{filepath.Join(dir, "missing"), "Directory", false},
		{file, "File", true},
		{dir, "File", false},
		{filepath.Join(dir, "new", "dir"), "DirectoryOrCreate", true},
		{file, "DirectoryOrCreate", false},
		{filepath.Join(dir, "made", "file"), "FileOrCreate", true},
		{dir, "FileOrCreate", false},
		{file, "Socket", false},
		{file, "Bogus", false},
	}
	for _, tc := range tests {
		err := checkHostPath(&manifests.HostPathVolumeSource{Path: tc.path, Type: tc.typ})
		if (err == nil) != tc.ok {
			t.Errorf("%s %s: err %v, want ok=%v", tc.typ, tc.path, err, tc.ok)
		}
	}
	if info, err := os.Stat(filepath.Join(dir, "new", "dir")); err != nil || !info.IsDir() {
		t.Errorf("DirectoryOrCreate made no directory: %v", err)
	}
	if info, err := os.Stat(filepath.Join(dir, "made", "file")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("FileOrCreate made no file: %v", err)
	}
}

func TestHostAliases(t *testing.T) {
	t.Parallel()
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "web-0", Namespace: "prod"},
		Spec: manifests.PodSpec{Hostname: "web-0", Subdomain: "web",
			HostAliases: []manifests.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar"}}}}}
	got := fmt.Sprint(hostAliases(pod, "web-0"))
	want := "[{ [web-0.web.prod.svc.cluster.local web-0]} {10.1.2.3 [foo.local bar]}]"
	if got != want {
		t.Errorf("hostAliases = %s, want %s", got, want)
	}
}
