//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/node/dataplane"
	"github.com/capstan-io/capstan/node/podman"
)

// The data plane end to end: two node daemons on this machine (`up` with
// the data plane, and `node --dataplane=false` with node address
// 127.0.0.2), a Deployment of two busybox httpd pods (one per node) behind
// a NodePort Service, reached from the host on the cluster IP and the node
// port and from inside a pod by every form of the service's name.
//
// Each run takes its own service CIDRs (10.1xx.yyy.0/24, the DNS server on
// .10, and fd00:10:zzz::/112 for IPv6), so it neither fights with a data
// plane of another run on this machine nor depends on one.

// svcWebYAML is the Deployment and its Service. Each pod serves
// "<version> <hostname>" on its http port; it is ready while /www/ready
// exists; on deletion its preStop keeps it serving 2 s more.
func svcWebYAML(version string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: web
          image: %s
          command: ["/bin/sh", "-c"]
          args:
            - |
              echo "$VERSION $(hostname)" > /www/index.html
              touch /www/ready
              trap 'exit 0' TERM
              httpd -f -p 8080 -h /www & wait
          env:
            - name: VERSION
              value: %q
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 1
            failureThreshold: 1
          lifecycle:
            preStop:
              exec: {command: [sh, -c, "sleep 2"]}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
`, e2eImage, version)
}

// dpWorld is the test's two nodes and its address plan.
type dpWorld struct {
	*e2e
	nodeB      string
	serviceNet string // "10.1xx.yyy"
	serviceV6  string // "fd00:10:zzz::/112"
}

func newDPWorld(t *testing.T) *dpWorld {
	e := newE2E(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CAPSTAN_REQUIRE_PODMAN") == "1" {
			t.Fatal("the data plane needs root for its interface (CAPSTAN_REQUIRE_PODMAN=1)")
		}
		t.Skip("the data plane needs root for its interface")
	}
	w := &dpWorld{e2e: e, nodeB: e.node + "-b", serviceNet: fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(256)),
		serviceV6: fmt.Sprintf("fd00:10:%x::/112", 0x100+rand.IntN(0xf00))}
	t.Cleanup(func() { // after the node daemons stop (cleanups run last first)
		out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+w.nodeB)
		if ids := strings.Fields(out); err == nil && len(ids) > 0 {
			_, _ = e.podman(append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...)
		}
	})
	return w
}

func (w *dpWorld) flags() []string {
	v6 := w.serviceV6
	if !dataplane.HostHasIPv6() {
		v6 = "none"
	}
	return []string{"--service-cidr", w.serviceNet + ".0/24", "--cluster-dns", w.serviceNet + ".10", "--service-cidr-v6", v6}
}

// start runs `capstan up` (node A, with the data plane) and `capstan node`
// (node B, without), and waits for both nodes to be Ready.
func (w *dpWorld) start() {
	t := w.t
	t.Helper()
	run := func(name string, args []string) {
		ctx, cancel := context.WithCancel(context.Background())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() { done <- Run(ctx, args, out, out) }()
		w.root.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					w.root.Errorf("%s: %v", name, err)
				}
			case <-time.After(60 * time.Second):
				w.root.Errorf("%s did not stop within 60s", name)
			}
			if w.root.Failed() || os.Getenv("CAPSTAN_E2E_LOGS") == "1" {
				w.root.Logf("output of %s:\n%s", name, out.String())
			}
		})
		go func() {
			select {
			case err := <-done:
				done <- err
				if ctx.Err() == nil {
					t.Errorf("%s exited early: %v\n%s", name, err, out.String())
				}
			case <-ctx.Done():
			}
		}()
	}
	run("capstan up", append([]string{"up", "--repo", w.repo.dir, "--data-dir", w.dataDir, "--listen", w.listen,
		"--node-name", w.node, "--poll-interval", "1h", "--log-level", "debug"}, w.flags()...))
	sock := "unix://" + podman.SocketPath(filepath.Join(w.dataDir, "podman"))
	checkFor(t, 90*time.Second, "node "+w.node+" Ready", func() error { return w.nodeReady(w.node) })
	run("capstan node", append([]string{"node", "--server", w.url, "--data-dir", t.TempDir(), "--node-name", w.nodeB, "--token", w.joinToken(),
		"--node-address", "127.0.0.2", "--dataplane=false", "--podman-socket", sock, "--log-level", "debug"}, w.flags()...))
	checkFor(t, 60*time.Second, "node "+w.nodeB+" Ready", func() error { return w.nodeReady(w.nodeB) })
}

// service returns the web Service's cluster IP and node port.
func (w *dpWorld) service() (clusterIP string, nodePort int, err error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				ClusterIP string `json:"clusterIP"`
				Ports     []struct {
					NodePort int `json:"nodePort"`
				} `json:"ports"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := w.getJSON(&list, "get", "services", "-o", "json"); err != nil {
		return "", 0, err
	}
	for _, s := range list.Items {
		if s.Metadata.Name == "web" {
			if s.Spec.ClusterIP == "" || len(s.Spec.Ports) == 0 || s.Spec.Ports[0].NodePort == 0 {
				return "", 0, fmt.Errorf("service not allocated yet: %+v", s.Spec)
			}
			return s.Spec.ClusterIP, s.Spec.Ports[0].NodePort, nil
		}
	}
	return "", 0, fmt.Errorf("no service web in %+v", list.Items)
}

// get fetches url on a new connection: every request is a new choice of
// endpoint.
var dpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func dpGet(url string) (string, error) {
	resp, err := dpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// spread fetches url n times and counts the answers.
// bothAnswer checks that n requests to url reach both pods.
func bothAnswer(url string, n int) func() error {
	return func() error {
		seen, err := spread(url, n)
		if err != nil {
			return err
		}
		if len(seen) != 2 {
			return fmt.Errorf("answers %v", seen)
		}
		return nil
	}
}

func spread(url string, n int) (map[string]int, error) {
	seen := map[string]int{}
	for range n {
		body, err := dpGet(url)
		if err != nil {
			return seen, err
		}
		seen[body]++
	}
	return seen, nil
}

// webContainers returns the running web containers by pod name.
func (w *dpWorld) webContainers() (map[string]string, error) {
	byPod := map[string]string{}
	for _, node := range []string{w.node, w.nodeB} {
		out, err := w.podman("ps", "--filter", "label=capstan.node="+node, "--filter", "label=app=web",
			"--filter", "label=capstan.container=web", "--format", `{{.ID}} {{index .Labels "capstan.pod"}}`)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				_, name, _ := strings.Cut(f[1], "/")
				byPod[name] = f[0]
			}
		}
	}
	return byPod, nil
}

func TestE2EDataPlane(t *testing.T) {
	w := newDPWorld(t)
	// The Deployment comes once both nodes are up, so that the scheduler
	// spreads its pods over them.
	w.repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\ndata:\n  a: b\n")
	w.repo.commit("placeholder")
	w.start()
	w.repo.write("web.yaml", svcWebYAML("v1"))
	w.repo.commit("web behind a service")

	pods := w.readyPods("web", 2, 120*time.Second)
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 2 {
		t.Fatalf("both pods on one node: %v; the test wants one per node", nodes)
	}
	var clusterIP string
	var nodePort int
	checkFor(t, 30*time.Second, "service allocated", func() (err error) {
		clusterIP, nodePort, err = w.service()
		return err
	})
	if !strings.HasPrefix(clusterIP, w.serviceNet+".") {
		t.Fatalf("cluster IP %s outside the test's range %s.0/24", clusterIP, w.serviceNet)
	}
	clusterURL := "http://" + clusterIP + "/"
	nodeURL := fmt.Sprintf("http://127.0.0.1:%d/", nodePort)
	t.Logf("cluster IP %s, node port %d", clusterIP, nodePort)

	t.Run("from the host, spread over both pods on both nodes", func(t *testing.T) {
		w.t = t
		for _, url := range []string{clusterURL, nodeURL} {
			checkFor(t, 30*time.Second, "both pods through "+url, func() error {
				seen, err := spread(url, 10)
				if err != nil {
					return err
				}
				if len(seen) != 2 {
					return fmt.Errorf("answers %v", seen)
				}
				for body, n := range seen {
					if !strings.HasPrefix(body, "v1 web-") || n < 3 {
						return fmt.Errorf("answers %v: want both pods, about evenly", seen)
					}
				}
				return nil
			})
		}
	})

	t.Run("from inside a pod, by name", func(t *testing.T) {
		w.t = t
		ctrs, err := w.webContainers()
		if err != nil || len(ctrs) != 2 {
			t.Fatalf("web containers %v: %v", ctrs, err)
		}
		for pod, id := range ctrs { // one on each node
			resolv := w.mustPodman("exec", id, "cat", "/etc/resolv.conf")
			if !strings.Contains(resolv, "nameserver "+w.serviceNet+".10") || !strings.Contains(resolv, "default.svc.cluster.local") ||
				!strings.Contains(resolv, "ndots:5") {
				t.Fatalf("pod %s resolv.conf:\n%s", pod, resolv)
			}
			for _, name := range []string{"web", "web.default", "web.default.svc", "web.default.svc.cluster.local"} {
				checkFor(t, 20*time.Second, pod+": wget http://"+name, func() error {
					out, err := w.podman("exec", id, "timeout", "5", "wget", "-qO-", "http://"+name+"/")
					if err != nil {
						return err
					}
					if !strings.HasPrefix(strings.TrimSpace(out), "v1 web-") {
						return fmt.Errorf("answer %q", out)
					}
					return nil
				})
			}
			// An unknown name fails (NXDOMAIN), promptly.
			begin := time.Now()
			if out, err := w.podman("exec", id, "timeout", "10", "nslookup", "nosuch.default.svc.cluster.local"); err == nil {
				t.Errorf("nosuch resolved: %s", out)
			}
			if d := time.Since(begin); d > 8*time.Second {
				t.Errorf("an unknown name took %s to fail", d)
			}
		}
	})

	t.Run("dual stack: IPv6 cluster IP and node port", func(t *testing.T) {
		w.t = t
		if !dataplane.HostHasIPv6() {
			t.Skip("this host has no IPv6")
		}
		w.dualStack(t, nodePort)
	})

	t.Run("a pod that turns unready stops getting connections", func(t *testing.T) {
		w.t = t
		ctrs, err := w.webContainers()
		if err != nil || len(ctrs) != 2 {
			t.Fatalf("web containers %v: %v", ctrs, err)
		}
		var victim, id string
		for victim, id = range ctrs {
			break
		}
		w.mustPodman("exec", id, "rm", "/www/ready")
		begin := time.Now()
		// Probe period 1 s, one failure: the endpoint goes within a few
		// seconds (probe, status, endpoints, watch).
		checkFor(t, 5*time.Second, victim+" out of rotation", func() error {
			seen, err := spread(clusterURL, 8)
			if err != nil {
				return err
			}
			for body := range seen {
				if strings.HasSuffix(body, " "+victim) {
					return fmt.Errorf("answers %v still include %s", seen, victim)
				}
			}
			return nil
		})
		t.Logf("%s out of rotation after %s", victim, time.Since(begin).Round(time.Millisecond))
		holdFor(t, 2*time.Second, victim+" stays out", func() error {
			body, err := dpGet(clusterURL)
			if err != nil {
				return err
			}
			if strings.HasSuffix(body, " "+victim) {
				return fmt.Errorf("%s answered while not ready", victim)
			}
			return nil
		})
		w.mustPodman("exec", id, "touch", "/www/ready")
		checkFor(t, 10*time.Second, victim+" back in rotation", bothAnswer(clusterURL, 8))
	})

	t.Run("rolling update under load fails no request", func(t *testing.T) {
		w.t = t
		var ok, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond) // 20 requests/s
			defer tick.Stop()
			var inner sync.WaitGroup
			defer inner.Wait()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				inner.Go(func() {
					if _, err := dpGet(clusterURL); err != nil {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
						mu.Unlock()
						return
					}
					ok.Add(1)
				})
			}
		})
		stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer func() {
			stopLoad()
			if t.Failed() && failed.Load() > 0 {
				mu.Lock()
				defer mu.Unlock()
				t.Logf("%d request(s) failed during the rollout:\n%s", failed.Load(), strings.Join(failures, "\n"))
			}
		}()
		begin := time.Now()
		w.repo.write("web.yaml", svcWebYAML("v2"))
		w.repo.commit("web v2")
		checkFor(t, 60*time.Second, "the rollout to v2 finished", func() error {
			ps, err := w.pods("web")
			if err != nil {
				return err
			}
			if len(ps) != 2 || !ps[0].ready() || !ps[1].ready() {
				return fmt.Errorf("%d pods, not all ready", len(ps))
			}
			seen, err := spread(clusterURL, 6)
			if err != nil {
				return err
			}
			if len(seen) != 2 {
				return fmt.Errorf("answers %v, want two", seen)
			}
			for body := range seen {
				if !strings.HasPrefix(body, "v2 ") {
					return fmt.Errorf("answer %q is not from v2", body)
				}
			}
			return nil
		})
		// A little more load on the finished rollout (a second's worth of
		// requests done), then stop.
		more := ok.Load() + failed.Load() + 20
		checkFor(t, 30*time.Second, "20 more requests after the rollout", func() error {
			if n := ok.Load() + failed.Load(); n < more {
				return fmt.Errorf("%d of %d", n, more)
			}
			return nil
		})
		stopLoad()
		t.Logf("rollout took %s; %d requests succeeded, %d failed", time.Since(begin).Round(time.Millisecond), ok.Load(), failed.Load())
		if failed.Load() > 0 {
			t.Errorf("%d request(s) failed during the rollout:\n%s", failed.Load(), strings.Join(failures, "\n"))
		}
		if ok.Load() < 100 {
			t.Errorf("only %d requests succeeded: the loop did not run", ok.Load())
		}
	})
}

// dualStack checks the web Service over IPv6: it has an IPv6 cluster IP
// from the run's range; the host reaches it and the node port on [::1];
// every pod (on the Capstan network, with an IPv6 address) resolves web's
// AAAA record and fetches from the IPv6 cluster IP. The endpoints stay
// IPv4 (node address and host port): the proxy bridges the families.
func (w *dpWorld) dualStack(t *testing.T, nodePort int) {
	var spec struct {
		Spec struct {
			ClusterIPs []string `json:"clusterIPs"`
			IPFamilies []string `json:"ipFamilies"`
		} `json:"spec"`
	}
	if err := w.getJSON(&spec, "get", "services", "web", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if len(spec.Spec.ClusterIPs) != 2 || strings.Join(spec.Spec.IPFamilies, ",") != "IPv4,IPv6" {
		t.Fatalf("web is not dual stack: %+v", spec.Spec)
	}
	v6 := netip.MustParseAddr(spec.Spec.ClusterIPs[1])
	if !netip.MustParsePrefix(w.serviceV6).Contains(v6) {
		t.Fatalf("IPv6 cluster IP %s outside the run's range %s", v6, w.serviceV6)
	}
	v6URL := "http://[" + v6.String() + "]/"
	for _, url := range []string{v6URL, fmt.Sprintf("http://[::1]:%d/", nodePort)} {
		checkFor(t, 30*time.Second, "both pods through "+url, bothAnswer(url, 10))
	}
	ctrs, err := w.webContainers()
	if err != nil || len(ctrs) != 2 {
		t.Fatalf("web containers %v: %v", ctrs, err)
	}
	for pod, id := range ctrs { // one on each node
		addrs := w.mustPodman("exec", id, "ip", "-6", "addr", "show", "scope", "global")
		if !strings.Contains(addrs, "inet6 ") {
			t.Fatalf("pod %s has no global IPv6 address:\n%s", pod, addrs)
		}
		for _, name := range []string{"web", "web.default.svc.cluster.local"} {
			checkFor(t, 20*time.Second, pod+": AAAA "+name, func() error {
				// BusyBox's nslookup asks every search domain and exits 1
				// when one of them has no such name: the answer counts.
				out, err := w.podman("exec", id, "timeout", "5", "nslookup", "-type=AAAA", name)
				if !strings.Contains(out, v6.String()) {
					return fmt.Errorf("no %s in (%v):\n%s", v6, err, out)
				}
				return nil
			})
		}
		checkFor(t, 20*time.Second, pod+": wget "+v6URL, func() error {
			out, err := w.podman("exec", id, "timeout", "5", "wget", "-qO-", v6URL)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(strings.TrimSpace(out), "v1 web-") {
				return fmt.Errorf("answer %q", out)
			}
			return nil
		})
	}
}
