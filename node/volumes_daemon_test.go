package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
)

// waitFor waits up to 10 s until fn returns nil (testwait.For).
func waitFor(t *testing.T, what string, fn func() error) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, fn)
}

func fileIs(p, want string) func() error {
	return func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if string(b) != want {
			return fmt.Errorf("%s = %q, want %q", p, b, want)
		}
		return nil
	}
}

// TestDaemonConfigAndVolumes runs a daemon on the fake runtime: a pod
// whose ConfigMap is missing waits with CreateContainerConfigError; once
// the assignment carries it, the containers get their environment and
// mounts and the files are written; a changed ConfigMap rewrites the file
// without a restart; the pod's directory goes with the pod, its claim's
// volume stays.
func TestDaemonConfigAndVolumes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	rt := fake.New(fake.Options{})
	rt.AddImage("img")
	assignments, status := memstore.New(), memstore.New()
	d := &node.Daemon{Name: "n1", Address: "192.0.2.10", Runtime: rt, Nodes: memstore.New(), Assignments: assignments, Status: status,
		DataDir: t.TempDir(), RelistInterval: 20 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})

	pod := manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-1", Labels: map[string]string{"app": "x"}},
		Spec: manifests.PodSpec{NodeName: "n1", Hostname: "p", Subdomain: "svc",
			HostAliases: []manifests.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.example"}}},
			Containers: []manifests.Container{
				{Name: "app", Image: "img", Command: []string{"serve", "$(GREETING) $(POD)"},
					EnvFrom: []manifests.EnvFromSource{{Prefix: "S_", SecretRef: &manifests.SecretEnvSource{Name: "creds"}}},
					Env: []manifests.EnvVar{
						{Name: "GREETING", ValueFrom: &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.ConfigMapKeySelector{Name: "settings", Key: "greeting"}}},
						{Name: "POD", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "HOST", ValueFrom: &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
					},
					VolumeMounts: []manifests.VolumeMount{
						{Name: "config", MountPath: "/etc/config"},
						{Name: "scratch", MountPath: "/scratch"},
						{Name: "data", MountPath: "/data"},
					}},
				{Name: "side", Image: "img", Command: []string{"sleep", "1000"},
					VolumeMounts: []manifests.VolumeMount{{Name: "scratch", MountPath: "/shared", ReadOnly: true}, {Name: "mem", MountPath: "/mem"}}},
			},
			Volumes: []manifests.Volume{
				{Name: "config", VolumeSource: manifests.VolumeSource{ConfigMap: &manifests.ConfigMapVolumeSource{Name: "settings"}}},
				{Name: "scratch", VolumeSource: manifests.VolumeSource{EmptyDir: &manifests.EmptyDirVolumeSource{}}},
				{Name: "mem", VolumeSource: manifests.VolumeSource{EmptyDir: &manifests.EmptyDirVolumeSource{Medium: "Memory"}}},
				{Name: "data", VolumeSource: manifests.VolumeSource{PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: "data-p"}}},
			},
		},
	}
	secret := manifests.Secret{ObjectMeta: manifests.ObjectMeta{Name: "creds", Namespace: "default"}, Data: map[string][]byte{"token": []byte("t0k")}}
	put := func(cms ...manifests.ConfigMap) {
		t.Helper()
		b, err := json.Marshal(manifests.Assignment{Pod: pod, ConfigMaps: cms, Secrets: []manifests.Secret{secret}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := assignments.Put(ctx, "n1.default.p", b); err != nil {
			t.Fatal(err)
		}
	}
	report := func() (manifests.PodStatusReport, error) {
		var r manifests.PodStatusReport
		e, err := status.Get(ctx, "n1.default.p")
		if err != nil {
			return r, err
		}
		return r, json.Unmarshal(e.Value, &r)
	}

	// The ConfigMap is missing: the containers wait, naming it.
	put()
	waitFor(t, "CreateContainerConfigError reported", func() error {
		r, err := report()
		if err != nil {
			return err
		}
		for _, cs := range r.Status.ContainerStatuses {
			if w := cs.State.Waiting; cs.Name == "app" && w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `configmap "settings" not found`) {
				return nil
			}
		}
		return fmt.Errorf("status %+v", r.Status)
	})
	if pods, _ := rt.ListPods(ctx, nil); len(pods) != 0 {
		t.Fatalf("a pod was created without its ConfigMap: %+v", pods)
	}

	// With it, the pod runs.
	cm := func(greeting string) manifests.ConfigMap {
		return manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "settings", Namespace: "default"},
			Data: map[string]string{"greeting": greeting, "app.conf": "mode=" + greeting}}
	}
	put(cm("hello"))
	var app, side node.ContainerConfig
	var podCfg node.PodConfig
	waitFor(t, "containers created", func() error {
		pods, err := rt.ListPods(ctx, nil)
		if err != nil || len(pods) != 1 || len(pods[0].Containers) != 2 {
			return fmt.Errorf("pods %+v, %v", pods, err)
		}
		podCfg, _ = rt.PodConfig(pods[0].ID)
		for _, c := range pods[0].Containers {
			cfg, _ := rt.ContainerConfig(c.ID)
			switch c.Labels[node.LabelContainer] {
			case "app":
				app = cfg
			case "side":
				side = cfg
			}
		}
		return nil
	})
	wantEnv := map[string]string{"S_token": "t0k", "GREETING": "hello", "POD": "p", "HOST": "192.0.2.10"}
	if fmt.Sprint(app.Env) != fmt.Sprint(wantEnv) {
		t.Errorf("env %v, want %v", app.Env, wantEnv)
	}
	if got := strings.Join(app.Command, " "); got != "serve hello p" {
		t.Errorf("command %q: $(VAR) not expanded", got)
	}
	volDir := func(name string) string { return filepath.Join(d.DataDir, "pods", "uid-1", "volumes", name) }
	wantMounts := fmt.Sprint([]node.Mount{
		{Type: node.MountBind, Source: volDir("config"), Target: "/etc/config", ReadOnly: true},
		{Type: node.MountBind, Source: volDir("scratch"), Target: "/scratch"},
		{Type: node.MountVolume, Source: "default_data-p", Target: "/data"},
	})
	if fmt.Sprint(app.Mounts) != wantMounts {
		t.Errorf("app mounts\n%v, want\n%v", app.Mounts, wantMounts)
	}
	wantSide := fmt.Sprint([]node.Mount{
		{Type: node.MountBind, Source: volDir("scratch"), Target: "/shared", ReadOnly: true},
		{Type: node.MountTmpfs, Target: "/mem"},
	})
	if fmt.Sprint(side.Mounts) != wantSide {
		t.Errorf("side mounts\n%v, want\n%v", side.Mounts, wantSide)
	}
	wantAliases := fmt.Sprint([]node.HostAlias{{Hostnames: []string{"p.svc.default.svc.cluster.local", "p"}}, {IP: "10.1.2.3", Hostnames: []string{"foo.example"}}})
	if fmt.Sprint(podCfg.HostAliases) != wantAliases {
		t.Errorf("host aliases %v, want %v", podCfg.HostAliases, wantAliases)
	}
	if err := fileIs(filepath.Join(volDir("config"), "app.conf"), "mode=hello")(); err != nil {
		t.Error(err)
	}
	if vols := rt.Volumes(); vols["default_data-p"]["capstan.claim"] != "default/data-p" || vols["default_data-p"]["capstan.node"] != "n1" {
		t.Errorf("claim volume %v", vols)
	}

	// A changed ConfigMap reaches the file; nothing restarts.
	put(cm("bonjour"))
	waitFor(t, "file updated", fileIs(filepath.Join(volDir("config"), "app.conf"), "mode=bonjour"))
	pods, _ := rt.ListPods(ctx, nil)
	if len(pods) != 1 || len(pods[0].Containers) != 2 {
		t.Errorf("containers changed with the ConfigMap: %+v", pods)
	}

	// Unassigned: the pod and its directory go, the claim stays.
	if err := assignments.Delete(ctx, "n1.default.p", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod directory removed", func() error {
		if pods, _ := rt.ListPods(ctx, nil); len(pods) != 0 {
			return fmt.Errorf("pods %+v", pods)
		}
		if _, err := os.Stat(filepath.Join(d.DataDir, "pods", "uid-1")); !os.IsNotExist(err) {
			return fmt.Errorf("pod dir: %v", err)
		}
		return nil
	})
	if _, ok := rt.Volumes()["default_data-p"]; !ok {
		t.Error("the claim's volume went with the pod")
	}
}
