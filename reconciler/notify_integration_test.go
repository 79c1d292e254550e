package reconciler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/gitops"
)

// TestNotifierDeduplicationSurvivesRestart: a failure notified once is not
// sent again by a control plane restarted on the same bus, while a new
// failure is; the memory is bounded by the bucket's TTL.
func TestNotifierDeduplicationSurvivesRestart(t *testing.T) {
	t.Parallel()
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	var mu sync.Mutex
	var got []string // revision/reason of each message received
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n gitops.Notice
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("notice %q: %v", b, err)
		}
		mu.Lock()
		got = append(got, n.Revision+"/"+n.Reason)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	// received waits for n messages and returns those received.
	received := func(n int) []string {
		t.Helper()
		var out []string
		testwait.For(t, 10*time.Second, fmt.Sprintf("%d messages", n), func() error {
			mu.Lock()
			out = append([]string(nil), got...)
			mu.Unlock()
			if len(out) < n {
				return fmt.Errorf("received %v", out)
			}
			return nil
		})
		return out
	}
	spec := manifests.NotifierSpec{Type: manifests.NotifierGeneric, Address: hook.URL}
	failure := func(rev string) gitops.Notice {
		return gitops.Notice{Source: "apps", Event: manifests.NotifySync, Reason: gitops.ResultRejected, Revision: rev,
			Detail: "bad.yaml", Message: "revision " + rev + " rejected"}
	}
	// start runs a control plane's notifiers on its own connection to the
	// bus; stop ends it as a restart would.
	start := func() (*gitops.Notifiers, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		c := b.Connect(t, natsauth.RoleControlPlane, "control-plane", natsbus.Options{})
		ns := &gitops.Notifiers{State: c.Notified, RetryDelay: 10 * time.Millisecond, Log: logger(t)}
		ns.Set("hook", spec, nil)
		done := make(chan error, 1)
		go func() { done <- ns.Run(ctx) }()
		return ns, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			c.Close()
		}
	}

	ns, stop := start()
	ns.Notify(failure("r1"))
	ns.Notify(failure("r1")) // the same failure again: one message
	if out := received(1); len(out) != 1 || out[0] != "r1/Rejected" {
		t.Fatalf("first run sent %v", out)
	}
	stop()

	ns, stop = start()
	defer stop()
	ns.Notify(failure("r1")) // already sent before the restart
	ns.Notify(failure("r2")) // a new failure
	// One worker sends in order: once r2 arrived, a duplicate of r1 would have too.
	out := received(2)
	if len(out) != 2 || out[1] != "r2/Rejected" {
		t.Fatalf("after the restart sent %v, want only r2 more", out)
	}

	st, err := conn.Notified.(*natsbus.KV).Bucket().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 30*24*time.Hour || st.Values() == 0 {
		t.Fatalf("notified bucket: TTL %s, %d values", st.TTL(), st.Values())
	}
}
