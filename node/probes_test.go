package node

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func TestSettingsOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		kind string
		p    manifests.Probe
		want probeSettings
	}{
		{"defaults", probeReadiness, manifests.Probe{}, probeSettings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
		{"set", probeReadiness, manifests.Probe{InitialDelaySeconds: 5, PeriodSeconds: 2, TimeoutSeconds: 3, SuccessThreshold: 2, FailureThreshold: 4},
			probeSettings{initialDelay: 5 * time.Second, period: 2 * time.Second, timeout: 3 * time.Second, success: 2, failure: 4}},
		{"liveness needs one success", probeLiveness, manifests.Probe{SuccessThreshold: 3},
			probeSettings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}},
		{"startup needs one success", probeStartup, manifests.Probe{SuccessThreshold: 3, FailureThreshold: 30},
			probeSettings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 30}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := settingsOf(c.kind, &c.p); got != c.want {
				t.Errorf("settingsOf = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestProbeTracker(t *testing.T) {
	t.Parallel()
	s := probeSettings{success: 2, failure: 3}
	cases := []struct {
		name     string
		kind     string
		results  string // s = success, f = failure
		wantOK   bool
		wantFail bool // failed out
	}{
		{"liveness starts passing", probeLiveness, "", true, false},
		{"readiness starts failing", probeReadiness, "", false, false},
		{"startup starts failing", probeStartup, "", false, false},
		{"one success is not enough", probeReadiness, "s", false, false},
		{"success threshold", probeReadiness, "ss", true, false},
		{"a failure resets successes", probeReadiness, "sfs", false, false},
		{"failures below threshold keep success", probeLiveness, "ff", true, false},
		{"failure threshold", probeLiveness, "fff", false, true},
		{"a success resets failures", probeLiveness, "fffsff", false, false},
		{"recovered after threshold", probeReadiness, "ssfffss", true, false},
		{"stays failed below the success threshold", probeReadiness, "ssfffs", false, false},
		{"startup fails out", probeStartup, "fff", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := newTracker(c.kind)
			for _, r := range c.results {
				tr = tr.observe(r == 's', s)
			}
			if tr.ok != c.wantOK || tr.failedOut(s) != c.wantFail {
				t.Errorf("after %q: ok %v failedOut %v, want %v %v (%+v)", c.results, tr.ok, tr.failedOut(s), c.wantOK, c.wantFail, tr)
			}
		})
	}
}

// TestProbeSet drives the probes of one container through a script of
// results and checks the stage, the result and the verdicts.
func TestProbeSet(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	probe := func(delay, period, failure int32) *manifests.Probe {
		return &manifests.Probe{InitialDelaySeconds: delay, PeriodSeconds: period, FailureThreshold: failure}
	}
	type step struct {
		kind    string // the probe expected to be due
		at      int    // seconds after start it is due
		ok      bool
		result  probeResult
		restart bool
	}
	cases := []struct {
		name  string
		c     manifests.Container
		steps []step
	}{
		{"no probes", manifests.Container{}, nil},
		{"readiness flips", manifests.Container{ReadinessProbe: probe(2, 1, 2)}, []step{
			{probeReadiness, 2, true, probeResult{true, true}, false},
			{probeReadiness, 3, false, probeResult{true, true}, false},
			{probeReadiness, 4, false, probeResult{true, false}, false},
			{probeReadiness, 5, false, probeResult{true, false}, false},
			{probeReadiness, 6, true, probeResult{true, true}, false},
		}},
		{"liveness restarts", manifests.Container{LivenessProbe: probe(0, 5, 2)}, []step{
			{probeLiveness, 0, false, probeResult{true, true}, false},
			{probeLiveness, 5, false, probeResult{true, true}, true},
		}},
		{"startup gates the others", manifests.Container{StartupProbe: probe(0, 1, 5), LivenessProbe: probe(1, 10, 1), ReadinessProbe: probe(3, 10, 1)}, []step{
			{probeStartup, 0, false, probeResult{false, false}, false},
			{probeStartup, 1, false, probeResult{false, false}, false},
			{probeStartup, 2, true, probeResult{true, false}, false},
			// Liveness's initial delay has passed: it runs at once;
			// readiness waits for its own.
			{probeLiveness, 2, true, probeResult{true, false}, false},
			{probeReadiness, 3, true, probeResult{true, true}, false},
			{probeLiveness, 12, false, probeResult{true, true}, true},
		}},
		{"startup fails out", manifests.Container{StartupProbe: probe(0, 1, 2), LivenessProbe: probe(0, 1, 1)}, []step{
			{probeStartup, 0, false, probeResult{false, false}, false},
			{probeStartup, 1, false, probeResult{false, false}, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := newProbeSet(&c.c, start)
			for i, st := range c.steps {
				kind, at, ok := ps.due()
				if !ok || kind != st.kind || !at.Equal(start.Add(time.Duration(st.at)*time.Second)) {
					t.Fatalf("step %d: due %s at %v (%v), want %s at +%ds", i, kind, at.Sub(start), ok, st.kind, st.at)
				}
				v := ps.record(kind, st.ok, "msg", at)
				if got := ps.result(); got != st.result || v.restart != st.restart {
					t.Fatalf("step %d: result %+v restart %v, want %+v %v", i, got, v.restart, st.result, st.restart)
				}
				if v.restart && !strings.Contains(v.reason, "msg") {
					t.Errorf("step %d: restart reason %q lacks the probe's message", i, v.reason)
				}
			}
			if len(c.steps) == 0 {
				if _, _, ok := ps.due(); ok {
					t.Error("a container without probes has a probe due")
				}
				if got := ps.result(); got != (probeResult{true, true}) {
					t.Errorf("without probes: %+v, want started and ready", got)
				}
			}
		})
	}
}

func TestHandlers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Probe") != "yes" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			<-r.Context().Done() // no answer until the probe gives up: its timeout must end it
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host, portText, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portText)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	c := &manifests.Container{Name: "c", Ports: []manifests.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	tgt := target{container: c, podIP: host}
	get := func(path string, p manifests.IntOrString) handler {
		return handler{http: &manifests.HTTPGetAction{Path: path, Port: p, HTTPHeaders: []manifests.HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}
	}
	byNum := manifests.IntOrString{IntVal: int32(port)}
	byName := manifests.IntOrString{IsString: true, StrVal: "http"}
	cases := []struct {
		name    string
		h       handler
		timeout time.Duration
		ok      bool
	}{
		{"http 200", get("/ok", byNum), time.Second, true},
		{"http by port name", get("ok", byName), time.Second, true},
		{"http unknown port name", get("/ok", manifests.IntOrString{IsString: true, StrVal: "nope"}), time.Second, false},
		{"http 500", get("/fail", byNum), time.Second, false},
		{"http 302 is success", get("/redirect", byNum), time.Second, true},
		{"http timeout", get("/slow", byNum), 100 * time.Millisecond, false},
		{"tcp open", handler{tcp: &manifests.TCPSocketAction{Port: byNum}}, time.Second, true},
		{"tcp closed", handler{tcp: &manifests.TCPSocketAction{Port: manifests.IntOrString{IntVal: int32(closedPort)}, Host: "127.0.0.1"}}, time.Second, false},
		{"sleep", handler{sleep: &manifests.SleepAction{Seconds: 0}}, time.Second, true},
		{"sleep cut by the deadline", handler{sleep: &manifests.SleepAction{Seconds: 5}}, 50 * time.Millisecond, false},
		{"nothing", handler{}, time.Second, false},
	}
	d := &Daemon{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := d.runHandler(ctx, tc.h, tgt)
			if (err == nil) != tc.ok {
				t.Errorf("runHandler: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := address("", byNum, target{container: c}); err == nil {
		t.Error("an address without a pod IP or a host resolved")
	}
}
