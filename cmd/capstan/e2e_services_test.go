//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the control plane's half of Services on real Podman,
// without the data plane (--dataplane=false): the endpoint slice lists
// each ready pod at its node's address and the host port Podman picked
// for its container port, reachable from the host; a pod that fails its
// readiness probe leaves the ready endpoints; `get services`, `get
// endpoints` and `describe service` show it; a deleted pod goes through
// Terminating before it is gone.

func svcEndpointsYAML(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: %[1]s
          command: ["/bin/sh", "-c"]
          args:
            - |
              mkdir -p /www; hostname > /www/index.html; touch /www/ready
              trap 'exit 0' TERM
              httpd -f -p 8080 -h /www & wait
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
`, e2eImage, replicas)
}

// startUpNoDataPlane runs `capstan up` without the data plane (this test
// needs none, and leaves the host's addresses alone) and waits for the
// node to be Ready.
func (e *e2e) startUpNoDataPlane() {
	e.t.Helper()
	e.startUpWith(e.repo.dir, "--dataplane=false")
}

// sliceJSON is an EndpointSlice as `get endpoints -o json` prints it.
type sliceJSON struct {
	AddressType string `json:"addressType"`
	Endpoints   []struct {
		Addresses  []string `json:"addresses"`
		Conditions struct {
			Ready       *bool `json:"ready"`
			Terminating *bool `json:"terminating"`
		} `json:"conditions"`
		NodeName  string           `json:"nodeName"`
		HostPorts map[string]int32 `json:"hostPorts"`
		TargetRef struct {
			Name string `json:"name"`
		} `json:"targetRef"`
	} `json:"endpoints"`
}

func (e *e2e) slice(name string) (sliceJSON, error) {
	var s sliceJSON
	err := e.getJSON(&s, "get", "endpoints", name, "-o", "json")
	return s, err
}

// readyEndpoints maps each ready endpoint's pod to node:hostport.
func (s sliceJSON) readyEndpoints() map[string]string {
	out := map[string]string{}
	for _, ep := range s.Endpoints {
		if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
			out[ep.TargetRef.Name] = fmt.Sprintf("%s:%d", ep.Addresses[0], ep.HostPorts["http"])
		}
	}
	return out
}

func TestE2EServiceEndpoints(t *testing.T) {
	e := newE2E(t)
	e.repo.write("web.yaml", svcEndpointsYAML(2))
	e.repo.commit("web behind a service")
	e.startUpNoDataPlane()

	// Two ready endpoints, each at the node's address and the host port
	// Podman picked, serving its own pod.
	var eps map[string]string
	checkFor(t, 90*time.Second, "two ready endpoints", func() error {
		s, err := e.slice("web")
		if err != nil {
			return err
		}
		eps = s.readyEndpoints()
		if len(eps) != 2 {
			return fmt.Errorf("ready endpoints %v", eps)
		}
		return nil
	})
	for pod, addr := range eps {
		if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Fatalf("endpoint of %s at %s, want the node address and a host port", pod, addr)
		}
		checkFor(t, 10*time.Second, "GET "+addr, func() error {
			body, err := httpGet("http://" + addr + "/")
			if err != nil {
				return err
			}
			if strings.TrimSpace(body) != pod {
				return fmt.Errorf("%s answered %q, want its pod %s", addr, body, pod)
			}
			return nil
		})
	}

	out, _, err := e.cli("get", "services")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "NodePort") || !strings.Contains(out, "10.96.") || !strings.Contains(out, "80:3") || !strings.Contains(out, "/TCP") {
		t.Errorf("get services:\n%s", out)
	}
	out, _, err = e.cli("get", "endpoints")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range eps {
		if !strings.Contains(out, addr) {
			t.Errorf("get endpoints does not show %s:\n%s", addr, out)
		}
	}

	// A pod that fails its readiness probe leaves the ready endpoints, and
	// describe says why; it comes back when it passes again.
	var victim string
	for pod := range eps {
		victim = pod
		break
	}
	cs, err := e.containers()
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, c := range cs {
		if c.CPod == "default/"+victim && c.State == "running" {
			id = c.ID
		}
	}
	if id == "" {
		t.Fatalf("no running container of %s: %+v", victim, cs)
	}
	e.mustPodman("exec", id, "rm", "/www/ready")
	checkFor(t, 15*time.Second, victim+" not ready", func() error {
		s, err := e.slice("web")
		if err != nil {
			return err
		}
		if r := s.readyEndpoints(); len(r) != 1 || r[victim] != "" {
			return fmt.Errorf("ready endpoints %v", r)
		}
		return nil
	})
	out, _, err = e.cli("describe", "service", "web")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Endpoints:") || !strings.Contains(out, victim) || !strings.Contains(out, "not ready") {
		t.Errorf("describe service does not say why %s is not an endpoint:\n%s", victim, out)
	}
	e.mustPodman("exec", id, "touch", "/www/ready")
	checkFor(t, 15*time.Second, victim+" ready again", func() error {
		s, err := e.slice("web")
		if err != nil {
			return err
		}
		if r := s.readyEndpoints(); len(r) != 2 {
			return fmt.Errorf("ready endpoints %v", r)
		}
		return nil
	})

	// Scaling down deletes one pod gracefully: Terminating, then gone,
	// with its Podman pod.
	e.repo.write("web.yaml", svcEndpointsYAML(1))
	e.repo.commit("scale down") // a local repository is watched
	sawTerminating := false
	checkFor(t, 60*time.Second, "one pod left", func() error {
		out, _, err := e.cli("get", "pods")
		if err != nil {
			return err
		}
		if strings.Contains(out, "Terminating") {
			sawTerminating = true
		}
		var list struct {
			Items []podJSON `json:"items"`
		}
		if err := e.getJSON(&list, "get", "pods", "-o", "json"); err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d pods", len(list.Items))
		}
		return nil
	})
	if !sawTerminating {
		t.Error("get pods never showed the deleted pod Terminating")
	}
	checkFor(t, 30*time.Second, "one Podman pod left", func() error {
		out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+e.node)
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n != 1 {
			return fmt.Errorf("%d Podman pods", n)
		}
		return nil
	})
	checkFor(t, 15*time.Second, "one endpoint", func() error {
		s, err := e.slice("web")
		if err != nil {
			return err
		}
		if len(s.Endpoints) != 1 || len(s.readyEndpoints()) != 1 {
			return fmt.Errorf("endpoints %+v", s.Endpoints)
		}
		return nil
	})
}
