//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the pod lifecycle on real Podman: probes (readiness
// over HTTP to the pod's address, liveness and startup by exec), lifecycle
// hooks, init containers, OOMKilled, and `capstan exec`.

// lifecyclePodsYAML declares the pods of TestE2EPodLifecycle; hookDir is a
// host directory the hooks write to.
func lifecyclePodsYAML(hookDir string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: ready
  labels: {app: ready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: %[1]s
      command: ["/bin/sh", "-c"]
      args:
        - |
          mkdir -p /www; echo hello > /www/index.html; echo ok > /www/ready.html
          trap 'exit 0' TERM
          httpd -f -p 8080 -h /www & wait
      ports:
        - {name: http, containerPort: 8080}
      readinessProbe:
        httpGet: {path: /ready.html, port: http}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: live
  labels: {app: live}
spec:
  terminationGracePeriodSeconds: 5
  volumes:
    - name: hooks
      hostPath: {path: %[2]s, type: Directory}
  containers:
    - name: main
      image: %[1]s
      command: ["/bin/sh", "-c"]
      args:
        - |
          touch /tmp/healthy
          trap 'exit 0' TERM
          while true; do sleep 1 & wait; done
      volumeMounts:
        - {name: hooks, mountPath: /hooks}
      livenessProbe:
        exec: {command: [cat, /tmp/healthy]}
        periodSeconds: 1
        failureThreshold: 2
      lifecycle:
        postStart:
          exec: {command: [sh, -c, "echo poststart >> /hooks/live.log"]}
        preStop:
          exec: {command: [sh, -c, "echo prestop >> /hooks/live.log; sleep 1; echo prestop-done >> /hooks/live.log"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: startup
  labels: {app: startup}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: %[1]s
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
      startupProbe:
        exec: {command: [cat, /tmp/started]}
        periodSeconds: 1
        failureThreshold: 120
      livenessProbe:
        exec: {command: ["true"]}
        periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: init
  labels: {app: init}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
    - name: work
      emptyDir: {}
  initContainers:
    - name: first
      image: %[1]s
      command: ["sh", "-c", "echo first-ran; echo first > /work/order"]
      volumeMounts:
        - {name: work, mountPath: /work}
    - name: second
      image: %[1]s
      command: ["sh", "-c", "test -f /work/order && echo second >> /work/order"]
      volumeMounts:
        - {name: work, mountPath: /work}
  containers:
    - name: app
      image: %[1]s
      command: ["sh", "-c", "cat /work/order; trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
      volumeMounts:
        - {name: work, mountPath: /work}
---
apiVersion: v1
kind: Pod
metadata:
  name: oom
  labels: {app: oom}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: hog
      image: %[1]s
      command: ["sh", "-c", "head -c 64m /dev/zero | tail"]
      resources:
        limits: {memory: 16Mi}
`, e2eImage, hookDir)
}

// lifecyclePodJSON is a pod as `get pods -o json` prints it, with what
// these tests read.
type lifecyclePodJSON struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase                 string              `json:"phase"`
		PodIP                 string              `json:"podIP"`
		Conditions            []condition         `json:"conditions"`
		InitContainerStatuses []containerStatusJS `json:"initContainerStatuses"`
		ContainerStatuses     []containerStatusJS `json:"containerStatuses"`
	} `json:"status"`
}

type containerStatusJS struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	Started      *bool  `json:"started"`
	RestartCount int    `json:"restartCount"`
	State        struct {
		Running *struct{} `json:"running"`
		Waiting *struct {
			Reason string `json:"reason"`
		} `json:"waiting"`
		Terminated *struct {
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"terminated"`
	} `json:"state"`
}

func (p lifecyclePodJSON) cond(typ string) string {
	if c := findCond(p.Status.Conditions, typ); c != nil {
		return c.Status
	}
	return ""
}

func (p lifecyclePodJSON) container(name string) containerStatusJS {
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	return containerStatusJS{}
}

// pod returns one pod by name.
func (e *e2e) pod(name string) (lifecyclePodJSON, error) {
	var list struct {
		Items []lifecyclePodJSON `json:"items"`
	}
	if err := e.getJSON(&list, "get", "pods", "-o", "json"); err != nil {
		return lifecyclePodJSON{}, err
	}
	for _, p := range list.Items {
		if p.Metadata.Name == name {
			return p, nil
		}
	}
	return lifecyclePodJSON{}, fmt.Errorf("no pod %s", name)
}

// waitPod waits until the named pod satisfies ok, which describes what is
// missing.
func (e *e2e) waitPod(name string, total time.Duration, what string, ok func(lifecyclePodJSON) error) lifecyclePodJSON {
	e.t.Helper()
	var got lifecyclePodJSON
	checkFor(e.t, total, name+": "+what, func() error {
		p, err := e.pod(name)
		if err != nil {
			return err
		}
		got = p
		if err := ok(p); err != nil {
			return fmt.Errorf("%w; status %+v", err, p.Status)
		}
		return nil
	})
	return got
}

// exec runs `capstan exec` and returns its output and exit code. The
// server flag goes before "--" (cli would put it after, into the command).
func (e *e2e) exec(args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, append([]string{"exec", "--server", e.url}, args...), &out, &out)
	var ex exitError
	switch {
	case errors.As(err, &ex):
		return out.String(), ex.code, nil
	case err != nil:
		return out.String(), -1, err
	}
	return out.String(), 0, nil
}

func (e *e2e) mustExec(args ...string) string {
	e.t.Helper()
	out, code, err := e.exec(args...)
	if err != nil || code != 0 {
		e.t.Fatalf("capstan exec %v: code %d, %v: %s", args, code, err, out)
	}
	return out
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func TestE2EPodLifecycle(t *testing.T) {
	e := newE2E(t)
	hookDir := t.TempDir()
	e.repo.write("pods.yaml", lifecyclePodsYAML(hookDir))
	e.repo.commit("pods with probes, hooks, init containers and a memory hog")
	e.startUp()

	t.Run("ReadinessOverHTTPAndExec", func(t *testing.T) {
		e.t = t
		p := e.waitPod("ready", 60*time.Second, "Ready", func(p lifecyclePodJSON) error {
			if p.cond("Ready") != "True" || p.Status.PodIP == "" {
				return errors.New("not ready")
			}
			return nil
		})
		t.Logf("pod ready has address %s", p.Status.PodIP)
		if out := e.mustExec("ready", "--", "cat", "/www/index.html"); out != "hello\n" {
			t.Fatalf("exec cat: %q", out)
		}
		if out, code, err := e.exec("ready", "-c", "web", "--", "sh", "-c", "echo to-stderr >&2; exit 7"); err != nil || code != 7 || out != "to-stderr\n" {
			t.Fatalf("exec exit 7: code %d, %v, output %q", code, err, out)
		}
		if _, _, err := e.exec("ready", "-c", "nope", "--", "true"); err == nil {
			t.Fatal("exec in an unknown container succeeded")
		}

		e.mustExec("ready", "--", "rm", "/www/ready.html")
		e.waitPod("ready", 20*time.Second, "unready", func(p lifecyclePodJSON) error {
			if p.cond("Ready") != "False" || p.cond("ContainersReady") != "False" {
				return errors.New("still ready")
			}
			return nil
		})
		e.mustExec("ready", "--", "sh", "-c", "echo ok > /www/ready.html")
		p = e.waitPod("ready", 20*time.Second, "ready again", func(p lifecyclePodJSON) error {
			if p.cond("Ready") != "True" {
				return errors.New("not ready")
			}
			return nil
		})
		if cs := p.container("web"); cs.RestartCount != 0 {
			t.Fatalf("readiness failures restarted the container: %+v", cs)
		}
	})

	t.Run("LivenessRestartWithHooks", func(t *testing.T) {
		e.t = t
		e.waitPod("live", 60*time.Second, "Ready", func(p lifecyclePodJSON) error {
			if p.cond("Ready") != "True" {
				return errors.New("not ready")
			}
			return nil
		})
		checkFor(t, 10*time.Second, "postStart hook ran", func() error {
			if got := readFile(filepath.Join(hookDir, "live.log")); got != "poststart\n" {
				return fmt.Errorf("hook log %q", got)
			}
			return nil
		})
		e.mustExec("live", "--", "rm", "/tmp/healthy")
		e.waitPod("live", 30*time.Second, "restarted once by liveness", func(p lifecyclePodJSON) error {
			if cs := p.container("main"); cs.RestartCount != 1 || cs.State.Running == nil {
				return fmt.Errorf("container %+v", cs)
			}
			return nil
		})
		// The killed instance ran its preStop hook to the end, then the new
		// instance its postStart hook.
		checkFor(t, 10*time.Second, "hooks of the restart", func() error {
			if got := readFile(filepath.Join(hookDir, "live.log")); got != "poststart\nprestop\nprestop-done\npoststart\n" {
				return fmt.Errorf("hook log %q", got)
			}
			return nil
		})
		out, stderr, err := e.cli("describe", "pod", "live")
		if err != nil || !strings.Contains(out, "Killing") || !strings.Contains(out, "Unhealthy") {
			t.Fatalf("describe pod live lacks the Unhealthy and Killing events: %v %s\n%s", err, stderr, out)
		}
		// The new instance stays healthy.
		holdFor(t, 3*time.Second, "no second restart", func() error {
			p, err := e.pod("live")
			if err != nil {
				return err
			}
			if cs := p.container("main"); cs.RestartCount != 1 {
				return fmt.Errorf("container %+v", cs)
			}
			return nil
		})
	})

	t.Run("StartupProbeGates", func(t *testing.T) {
		e.t = t
		e.waitPod("startup", 60*time.Second, "running, not started", func(p lifecyclePodJSON) error {
			cs := p.container("main")
			if cs.State.Running == nil || cs.Started == nil || *cs.Started || cs.Ready || p.cond("Ready") != "False" {
				return fmt.Errorf("container %+v", cs)
			}
			return nil
		})
		e.mustExec("startup", "--", "touch", "/tmp/started")
		p := e.waitPod("startup", 20*time.Second, "started and ready", func(p lifecyclePodJSON) error {
			if cs := p.container("main"); cs.Started == nil || !*cs.Started || !cs.Ready || p.cond("Ready") != "True" {
				return fmt.Errorf("container %+v", cs)
			}
			return nil
		})
		if cs := p.container("main"); cs.RestartCount != 0 {
			t.Fatalf("restarted while starting: %+v", cs)
		}
	})

	t.Run("InitContainersInOrder", func(t *testing.T) {
		e.t = t
		p := e.waitPod("init", 60*time.Second, "initialized and ready", func(p lifecyclePodJSON) error {
			if p.cond("Initialized") != "True" || p.cond("Ready") != "True" {
				return errors.New("not ready")
			}
			return nil
		})
		for _, name := range []string{"first", "second"} {
			if cs := p.container(name); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" {
				t.Fatalf("init container %s: %+v", name, cs)
			}
		}
		checkFor(t, 10*time.Second, "the app read what the init containers wrote", func() error {
			out, stderr, err := e.cli("logs", "init")
			if err != nil || out != "first\nsecond\n" {
				return fmt.Errorf("logs init: %q %v %s", out, err, stderr)
			}
			return nil
		})
		if out, stderr, err := e.cli("logs", "init", "-c", "first"); err != nil || out != "first-ran\n" {
			t.Fatalf("logs of the init container: %q %v %s", out, err, stderr)
		}
	})

	t.Run("OOMKilled", func(t *testing.T) {
		e.t = t
		e.waitPod("oom", 60*time.Second, "OOMKilled", func(p lifecyclePodJSON) error {
			cs := p.container("hog")
			if p.Status.Phase != "Failed" || cs.State.Terminated == nil || cs.State.Terminated.Reason != "OOMKilled" {
				return fmt.Errorf("container %+v, terminated %+v", cs, cs.State.Terminated)
			}
			return nil
		})
	})

	t.Run("PreStopOnRemoval", func(t *testing.T) {
		e.t = t
		before := readFile(filepath.Join(hookDir, "live.log"))
		doc := lifecyclePodsYAML(hookDir)
		i := strings.Index(doc, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: live\n")
		j := strings.Index(doc, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: startup\n")
		e.repo.write("pods.yaml", doc[:i]+doc[j:])
		e.repo.commit("remove the live pod")
		checkFor(t, 30*time.Second, "live pod gone from Podman", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			for _, c := range cs {
				if c.CPod == "default/live" {
					return fmt.Errorf("container %s still there (%s)", c.ID[:12], c.State)
				}
			}
			return nil
		})
		if got := readFile(filepath.Join(hookDir, "live.log")); got != before+"prestop\nprestop-done\n" {
			t.Fatalf("hook log after removal %q, want %q", got, before+"prestop\nprestop-done\n")
		}
	})
}
