//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two gaps of the data plane's end-to-end coverage, on the world of
// e2e_dataplane_test.go (`up` with the data plane, a second node without
// it on 127.0.0.2, a random service CIDR):
//   - a headless Service in front of a StatefulSet: each pod answers by
//     its hostname under the service's name, and the service's name
//     answers the ready endpoints' addresses;
//   - a UDP Service: datagrams sent to the cluster IP reach both pods.

// stsWebYAML is a headless Service and a StatefulSet of two busybox httpd
// pods serving their hostname, ready once httpd answers.
func stsWebYAML() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: %s
          command: ["/bin/sh", "-c"]
          args:
            - |
              hostname > /www/index.html
              trap 'exit 0' TERM
              httpd -f -p 8080 -h /www & wait
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /, port: http}
            periodSeconds: 1
            failureThreshold: 1
`, e2eImage)
}

// nodeAddresses returns each node's address as the endpoints controller
// picks it (controllers.NodeAddress): its first InternalIP, else its first
// address.
func (w *dpWorld) nodeAddresses() (map[string]string, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Addresses []struct {
					Type    string `json:"type"`
					Address string `json:"address"`
				} `json:"addresses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := w.getJSON(&list, "get", "nodes", "-o", "json"); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range list.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				out[n.Metadata.Name] = a.Address
				break
			}
		}
		if _, ok := out[n.Metadata.Name]; !ok && len(n.Status.Addresses) > 0 {
			out[n.Metadata.Name] = n.Status.Addresses[0].Address
		}
	}
	return out, nil
}

// nslookup resolves name from inside a container with busybox nslookup
// and returns the addresses of the answer, sorted (the server's own
// "Address:" line, before the first "Name:", is left out).
func (w *dpWorld) nslookup(id, name string) ([]string, error) {
	out, err := w.podman("exec", id, "timeout", "10", "nslookup", name)
	if err != nil {
		return nil, fmt.Errorf("%w; output:\n%s", err, out)
	}
	var addrs []string
	inAnswer := false
	for l := range strings.SplitSeq(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "Name:"):
			inAnswer = true
		case inAnswer && strings.HasPrefix(l, "Address:"):
			a := strings.TrimSpace(strings.TrimPrefix(l, "Address:"))
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address in the answer:\n%s", out)
	}
	slices.Sort(addrs)
	return addrs, nil
}

// hostPorts returns, by pod name, the host port each pod of app publishes
// its containerPort on (status.hostPorts).
func (w *dpWorld) hostPorts(app string, containerPort int) (map[string]int, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Status struct {
				HostPorts []struct {
					ContainerPort int `json:"containerPort"`
					HostPort      int `json:"hostPort"`
				} `json:"hostPorts"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := w.getJSON(&list, "get", "pods", "-o", "json"); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range list.Items {
		if p.Metadata.Labels["app"] != app {
			continue
		}
		for _, hp := range p.Status.HostPorts {
			if hp.ContainerPort == containerPort && hp.HostPort > 0 {
				out[p.Metadata.Name] = hp.HostPort
			}
		}
		if out[p.Metadata.Name] == 0 {
			return nil, fmt.Errorf("pod %s reports no host port for %d: %+v", p.Metadata.Name, containerPort, p.Status.HostPorts)
		}
	}
	return out, nil
}

// srv looks up the SRV records of name from inside a container and returns
// their ports by target.
func (w *dpWorld) srv(id, name string) (map[string]int, error) {
	out, err := w.podman("exec", id, "timeout", "10", "nslookup", "-type=SRV", name)
	if err != nil {
		return nil, fmt.Errorf("%w; output:\n%s", err, out)
	}
	got := map[string]int{}
	for l := range strings.SplitSeq(out, "\n") {
		_, rec, ok := strings.Cut(l, "service =")
		if !ok {
			continue
		}
		f := strings.Fields(rec) // priority weight port target
		if len(f) != 4 {
			return nil, fmt.Errorf("SRV line %q", l)
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("SRV line %q: %w", l, err)
		}
		got[strings.TrimSuffix(f[3], ".")] = port
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("no SRV record in the answer:\n%s", out)
	}
	return got, nil
}

func TestE2EHeadlessStatefulSet(t *testing.T) {
	w := newDPWorld(t)
	w.repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\ndata:\n  a: b\n")
	w.repo.commit("placeholder")
	w.start()
	w.repo.write("web.yaml", stsWebYAML())
	w.repo.commit("a StatefulSet behind a headless service")

	pods := w.readyPods("web", 2, 120*time.Second)
	addrOf, err := w.nodeAddresses()
	if err != nil {
		t.Fatal(err)
	}
	// What the code documents (reconciler/endpoints.go, node/dataplane
	// plan.go): an endpoint's address is its node's address; a headless
	// service's name answers the ready endpoints' addresses, deduplicated,
	// and each StatefulSet pod answers by its hostname with its own.
	want := map[string][]string{} // name -> addresses
	var all []string
	for _, p := range pods {
		a := addrOf[p.Spec.NodeName]
		if a == "" {
			t.Fatalf("pod %s on node %q, which has no address (nodes %v)", p.Metadata.Name, p.Spec.NodeName, addrOf)
		}
		want[p.Metadata.Name+".web.default.svc.cluster.local"] = []string{a}
		if !slices.Contains(all, a) {
			all = append(all, a)
		}
	}
	slices.Sort(all)
	want["web.default.svc.cluster.local"] = all
	if _, ok := want["web-0.web.default.svc.cluster.local"]; !ok {
		t.Fatalf("StatefulSet pods are not named web-0 and web-1: %+v", pods)
	}
	if _, ok := want["web-1.web.default.svc.cluster.local"]; !ok {
		t.Fatalf("StatefulSet pods are not named web-0 and web-1: %+v", pods)
	}
	t.Logf("pods on nodes: %s -> %s, %s -> %s", pods[0].Metadata.Name, pods[0].Spec.NodeName, pods[1].Metadata.Name, pods[1].Spec.NodeName)

	hostPorts, err := w.hostPorts("web", 8080)
	if err != nil {
		t.Fatal(err)
	}
	wantSRV := map[string]int{}
	for pod, hp := range hostPorts {
		wantSRV[pod+".web.default.svc.cluster.local"] = hp
	}
	t.Logf("host ports of 8080: %v", hostPorts)

	ctrs, err := w.webContainers()
	if err != nil || len(ctrs) != 2 {
		t.Fatalf("web containers %v: %v", ctrs, err)
	}
	for pod, id := range ctrs {
		for _, name := range []string{"web-0.web.default.svc.cluster.local", "web-1.web.default.svc.cluster.local",
			"web.default.svc.cluster.local"} {
			checkFor(t, 20*time.Second, pod+": nslookup "+name, func() error {
				got, err := w.nslookup(id, name)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want[name]) {
					return fmt.Errorf("addresses %v, want %v", got, want[name])
				}
				return nil
			})
		}
		// The SRV records of the named port give each pod's host port,
		// the port its address serves the service's port on.
		checkFor(t, 20*time.Second, pod+": SRV _http._tcp.web", func() error {
			got, err := w.srv(id, "_http._tcp.web.default.svc.cluster.local")
			if err != nil {
				return err
			}
			if !maps.Equal(got, wantSRV) {
				return fmt.Errorf("SRV records %v, want %v", got, wantSRV)
			}
			return nil
		})
		// A pod ordinal the StatefulSet does not have is NXDOMAIN.
		if out, err := w.podman("exec", id, "timeout", "10", "nslookup", "web-2.web.default.svc.cluster.local"); err == nil {
			t.Errorf("%s: web-2 resolved: %s", pod, out)
		}
	}
}

// udpEchoSource is a UDP server that answers every datagram with the
// host's name. The demo image's busybox has no UDP server (its nc has no
// -u, and there is no udpsvd), so the test builds this one, static, and
// mounts it into the pods with a hostPath volume.
const udpEchoSource = `package main

import (
	"net"
	"os"
)

func main() {
	pc, err := net.ListenPacket("udp", ":"+os.Args[1])
	if err != nil {
		panic(err)
	}
	host, _ := os.Hostname()
	buf := make([]byte, 1500)
	for {
		_, addr, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo([]byte(host), addr)
	}
}
`

// buildUDPEcho builds udpEchoSource into a new directory and returns it.
func buildUDPEcho(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(udpEchoSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module udpecho\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "udpecho"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the UDP server: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func udpYAML(binDir string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: udp
spec:
  replicas: 2
  selector:
    matchLabels:
      app: udp
  template:
    metadata:
      labels:
        app: udp
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: udp
          image: %s
          command: ["/udpbin/udpecho", "5353"]
          ports:
            - name: dns-ish
              containerPort: 5353
              protocol: UDP
          volumeMounts:
            - name: bin
              mountPath: /udpbin
              readOnly: true
      volumes:
        - name: bin
          hostPath:
            path: %s
            type: Directory
---
apiVersion: v1
kind: Service
metadata:
  name: udp
spec:
  selector:
    app: udp
  ports:
    - name: dns-ish
      protocol: UDP
      port: 53
      targetPort: dns-ish
`, e2eImage, binDir)
}

// serviceIP returns a Service's cluster IP once allocated.
func (w *dpWorld) serviceIP(name string) (string, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				ClusterIP string `json:"clusterIP"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := w.getJSON(&list, "get", "services", "-o", "json"); err != nil {
		return "", err
	}
	for _, s := range list.Items {
		if s.Metadata.Name == name {
			if s.Spec.ClusterIP == "" {
				return "", fmt.Errorf("service %s has no cluster IP yet", name)
			}
			return s.Spec.ClusterIP, nil
		}
	}
	return "", fmt.Errorf("no service %s", name)
}

// udpAsk sends one datagram from a new socket (a new source port, so a
// new flow for the proxy) and returns the reply.
func udpAsk(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestE2EServiceUDP(t *testing.T) {
	w := newDPWorld(t)
	binDir := buildUDPEcho(t)
	w.repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\ndata:\n  a: b\n")
	w.repo.commit("placeholder")
	w.start()
	w.repo.write("udp.yaml", udpYAML(binDir))
	w.repo.commit("a UDP service")

	pods := w.readyPods("udp", 2, 120*time.Second)
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Metadata.Name] = true
		t.Logf("pod %s on node %s", p.Metadata.Name, p.Spec.NodeName)
	}
	var clusterIP string
	checkFor(t, 30*time.Second, "service allocated", func() (err error) {
		clusterIP, err = w.serviceIP("udp")
		return err
	})
	if !strings.HasPrefix(clusterIP, w.serviceNet+".") {
		t.Fatalf("cluster IP %s outside the test's range %s.0/24", clusterIP, w.serviceNet)
	}
	addr := net.JoinHostPort(clusterIP, "53")
	t.Logf("UDP service at %s; pods %v", addr, names)

	seen := map[string]int{}
	var lastErr error
	checkFor(t, 60*time.Second, "UDP replies from both pods", func() error {
		reply, err := udpAsk(addr)
		if err != nil {
			lastErr = err
		} else {
			if !names[reply] {
				t.Fatalf("reply %q is none of the pods %v", reply, names)
			}
			seen[reply]++
		}
		if len(seen) < 2 {
			return fmt.Errorf("replies came from %v, want both pods %v (last error: %v)", seen, names, lastErr)
		}
		return nil
	})
	t.Logf("replies: %v", seen)
}
