//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// configYAML is the ConfigMap and Secret of TestE2EConfig.
func configYAML(mode string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  greeting: hello
  mode: %[1]s
  app.conf: "mode=%[1]s"
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  password: s3cret
`, mode)
}

// configPodYAML is a pod that serves, with busybox httpd on hostPort, its
// ConfigMap, Secret and Downward API volumes, an emptyDir shared with a
// second container (holding both containers' view of their environment and
// /etc/hosts), and its claim's named volume, where each incarnation of the
// pod appends its uid.
func configPodYAML(hostPort int, claim string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: config-demo
  labels:
    app: config-demo
  annotations:
    team: core
spec:
  terminationGracePeriodSeconds: 1
  hostname: web
  subdomain: demo
  hostAliases:
    - ip: 10.9.8.7
      hostnames: [db.internal, cache.internal]
  containers:
    - name: web
      image: %s
      command: ["/bin/sh", "-c"]
      args:
        - |
          env > /srv/shared/env.txt
          cat /etc/hosts > /srv/shared/hosts.txt
          echo "$POD_UID" >> /srv/data/boots
          trap 'exit 0' TERM
          httpd -f -p 8080 -h /srv & wait
      resources:
        limits:
          memory: 64Mi
      envFrom:
        - prefix: CFG_
          configMapRef:
            name: app-config
        - secretRef:
            name: app-secret
      env:
        - name: GREETING
          valueFrom:
            configMapKeyRef: {name: app-config, key: greeting}
        - name: PASSWORD
          valueFrom:
            secretKeyRef: {name: app-secret, key: password}
        - name: OPTIONAL
          valueFrom:
            configMapKeyRef: {name: nowhere, key: x, optional: true}
        - name: POD_NAME
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef: {fieldPath: metadata.namespace}
        - name: POD_UID
          valueFrom:
            fieldRef: {fieldPath: metadata.uid}
        - name: POD_IP
          valueFrom:
            fieldRef: {fieldPath: status.podIP}
        - name: NODE_NAME
          valueFrom:
            fieldRef: {fieldPath: spec.nodeName}
        - name: TEAM
          valueFrom:
            fieldRef: {fieldPath: "metadata.annotations['team']"}
        - name: MEM_MI
          valueFrom:
            resourceFieldRef: {resource: limits.memory, divisor: 1Mi}
        - name: MESSAGE
          value: "$(GREETING) from $(POD_NAME), $$(ESCAPED)"
      ports:
        - containerPort: 8080
          hostPort: %d
      volumeMounts:
        - {name: config, mountPath: /srv/config}
        - {name: secret, mountPath: /srv/secret}
        - {name: info, mountPath: /srv/info}
        - {name: shared, mountPath: /srv/shared}
        - {name: data, mountPath: /srv/data}
        - {name: config, mountPath: /srv/pinned.conf, subPath: app.conf}
    - name: side
      image: %s
      command: ["/bin/sh", "-c", "echo side-was-here > /shared/from-side.txt; trap 'exit 0' TERM; while true; do sleep 5 & wait; done"]
      volumeMounts:
        - {name: shared, mountPath: /shared}
  volumes:
    - name: config
      configMap:
        name: app-config
        items:
          - {key: app.conf, path: app.conf}
    - name: secret
      secret:
        secretName: app-secret
    - name: info
      downwardAPI:
        items:
          - path: labels
            fieldRef: {fieldPath: metadata.labels}
          - path: name
            fieldRef: {fieldPath: metadata.name}
    - name: shared
      emptyDir: {}
    - name: data
      persistentVolumeClaim:
        claimName: %s
`, e2eImage, hostPort, e2eImage, claim)
}

// waitingPodYAML is a pod whose ConfigMap does not exist yet.
const waitingPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: waits-for-config
  labels:
    app: waits-for-config
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ` + e2eImage + `
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 5 & wait; done"]
      env:
        - name: LATER
          valueFrom:
            configMapKeyRef: {name: later-config, key: value}
`

const laterConfigYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: later-config
data:
  value: arrived
`

// TestE2EConfig checks on real Podman that ConfigMaps and Secrets committed
// to Git reach containers as environment and as files; that a commit
// changing the ConfigMap changes the mounted file of the running pod
// without a restart (but not a subPath mount, nor the environment); the
// Downward API; an emptyDir shared by two containers; a claim's named
// volume keeping its data across the pod's deletion and recreation;
// hostAliases and the subdomain in /etc/hosts; and a pod whose ConfigMap
// is missing waiting with CreateContainerConfigError until it arrives.
func TestE2EConfig(t *testing.T) {
	// Registered before newE2E's cleanups, so it runs after them: once
	// `up` has stopped and the pods are gone.
	var e *e2e
	t.Cleanup(func() {
		if e != nil {
			if _, err := e.podman("volume", "rm", "default_data-"+e.node); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	e = newE2E(t)
	claim := "data-" + e.node
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	get := func(path, want string) func() error {
		return func() error {
			body, err := httpGet(base + path)
			if err != nil {
				return err
			}
			if !strings.Contains(body, want) {
				return fmt.Errorf("GET %s = %q, want it to contain %q", path, body, want)
			}
			return nil
		}
	}
	e.repo.write("config.yaml", configYAML("one"))
	e.repo.write("pod.yaml", configPodYAML(port, claim))
	e.repo.write("waiting.yaml", waitingPodYAML)
	e.repo.commit("config, secret and a pod using them")
	e.startUp()
	start := time.Now()
	e.readyPods("config-demo", 1, 90*time.Second)
	t.Logf("pod ready in %s", time.Since(start).Round(time.Millisecond))

	checkFor(t, 20*time.Second, "the environment served", get("/shared/env.txt", "GREETING=hello"))
	env, err := httpGet(base + "/shared/env.txt")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.SplitSeq(env, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	for k, want := range map[string]string{
		"GREETING": "hello", "PASSWORD": "s3cret", "password": "s3cret", "CFG_greeting": "hello", "CFG_mode": "one",
		"POD_NAME": "config-demo", "POD_NAMESPACE": "default", "NODE_NAME": e.node, "TEAM": "core", "MEM_MI": "64",
		"MESSAGE": "hello from config-demo, $(ESCAPED)",
	} {
		if vars[k] != want {
			t.Errorf("env %s = %q, want %q", k, vars[k], want)
		}
	}
	if v, ok := vars["OPTIONAL"]; ok {
		t.Errorf("env OPTIONAL = %q: an optional reference to a missing ConfigMap sets nothing", v)
	}
	if vars["POD_UID"] == "" || vars["POD_IP"] == "" || strings.HasPrefix(vars["POD_IP"], "127.") {
		t.Errorf("env POD_UID %q, POD_IP %q: want the pod's uid and address", vars["POD_UID"], vars["POD_IP"])
	}
	firstUID := vars["POD_UID"]

	// Files: the ConfigMap item, the Secret, the Downward API, the
	// emptyDir written by the other container.
	for path, want := range map[string]string{
		"/config/app.conf":      "mode=one",
		"/pinned.conf":          "mode=one",
		"/secret/password":      "s3cret",
		"/info/name":            "config-demo",
		"/info/labels":          `app="config-demo"`,
		"/shared/from-side.txt": "side-was-here",
	} {
		checkFor(t, 10*time.Second, "GET "+path, get(path, want))
	}
	hosts, err := httpGet(base + "/shared/hosts.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, ip := range map[string]string{"db.internal": "10.9.8.7", "cache.internal": "10.9.8.7",
		"web.demo.default.svc.cluster.local": vars["POD_IP"], "web": vars["POD_IP"]} {
		if got := resolveHost(hosts, name); got != ip {
			t.Errorf("/etc/hosts gives %s %q, want %q:\n%s", name, got, ip, hosts)
		}
	}

	// The pod whose ConfigMap is missing waits, saying which.
	checkFor(t, 30*time.Second, "waits-for-config reports CreateContainerConfigError", func() error {
		w, err := e.waiting("waits-for-config", "main")
		if err != nil {
			return err
		}
		if w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, `configmap "later-config" not found`) {
			return fmt.Errorf("waiting %+v", w)
		}
		return nil
	})

	// A commit changes the ConfigMap and adds the missing one: the file
	// changes in the running pod, nothing restarts; the waiting pod runs.
	before, err := e.containers()
	if err != nil {
		t.Fatal(err)
	}
	e.repo.write("config.yaml", configYAML("two"))
	e.repo.write("later.yaml", laterConfigYAML)
	e.repo.commit("change the config, add the missing one")
	sb := time.Now()
	checkFor(t, 60*time.Second, "mounted file updated", get("/config/app.conf", "mode=two"))
	t.Logf("ConfigMap change reached the running pod in %s", time.Since(sb).Round(time.Millisecond))
	e.readyPods("waits-for-config", 1, 60*time.Second)
	after, err := e.containers()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := idsOf(filterApp(after, "config-demo")), idsOf(filterApp(before, "config-demo")); !slices.Equal(a, b) {
		t.Errorf("config-demo's containers changed with its ConfigMap: before %v, after %v", b, a)
	}
	if err := get("/pinned.conf", "mode=one")(); err != nil {
		t.Errorf("a subPath mount follows updates, Kubernetes' do not: %v", err)
	}
	if err := get("/shared/env.txt", "CFG_mode=one")(); err != nil {
		t.Errorf("the environment of a running container changed: %v", err)
	}

	// The claim's volume outlives the pod: delete it in Git, put it back.
	e.repo.remove("pod.yaml")
	e.repo.commit("delete the pod")
	checkFor(t, 60*time.Second, "config-demo gone", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		if n := len(filterApp(cs, "config-demo")); n > 0 {
			return fmt.Errorf("%d containers left", n)
		}
		return nil
	})
	e.repo.write("pod.yaml", configPodYAML(port, claim))
	e.repo.commit("recreate the pod")
	e.readyPods("config-demo", 1, 60*time.Second)
	checkFor(t, 20*time.Second, "the claim's data kept", func() error {
		body, err := httpGet(base + "/data/boots")
		if err != nil {
			return err
		}
		lines := strings.Fields(body)
		if len(lines) != 2 || lines[0] != firstUID || lines[1] == firstUID {
			return fmt.Errorf("boots %q: want the first pod's uid %s, then the new one's", body, firstUID)
		}
		return nil
	})
	checkFor(t, 10*time.Second, "the new pod's files", get("/config/app.conf", "mode=two"))
}

// resolveHost returns the address /etc/hosts gives name: its first line
// naming it, as the resolver reads it.
func resolveHost(hosts, name string) string {
	for line := range strings.SplitSeq(hosts, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && slices.Contains(f[1:], name) {
			return f[0]
		}
	}
	return ""
}

func idsOf(cs []ctr) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

type waitingJSON struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// waiting returns a container's waiting state from `get pods -o json`.
func (e *e2e) waiting(pod, container string) (waitingJSON, error) {
	out, stderr, err := e.cli("get", "pods", "-o", "json")
	if err != nil {
		return waitingJSON{}, fmt.Errorf("get pods: %w (%s)", err, stderr)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				ContainerStatuses []struct {
					Name  string `json:"name"`
					State struct {
						Waiting *waitingJSON `json:"waiting"`
					} `json:"state"`
				} `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return waitingJSON{}, fmt.Errorf("decode get pods: %w", err)
	}
	for _, p := range list.Items {
		if p.Metadata.Name != pod {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == container && cs.State.Waiting != nil {
				return *cs.State.Waiting, nil
			}
		}
		return waitingJSON{}, fmt.Errorf("pod %s container %s not waiting: %+v", pod, container, p.Status)
	}
	return waitingJSON{}, fmt.Errorf("no pod %s", pod)
}
