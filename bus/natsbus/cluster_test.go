package natsbus

import (
	"strings"
	"testing"
)

// TestClusterOptions: a cluster member must be named, routes need a
// cluster port, and a single server keeps R1 with no cluster fields.
func TestClusterOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts ServerOptions
		want string
	}{
		{ServerOptions{DataDir: t.TempDir(), ClusterPort: -1}, "server name of its own"},
		{ServerOptions{DataDir: t.TempDir(), Routes: []string{"nats://127.0.0.1:6222"}}, "routes need a cluster port"},
		{ServerOptions{DataDir: t.TempDir(), ServerName: "a", ClusterPort: -1, Routes: []string{"::not a url"}}, "not a nats://host:port URL"},
		{ServerOptions{DataDir: t.TempDir(), ServerName: "a", ClusterPort: -1, Routes: []string{"127.0.0.1:6222"}}, "not a nats://host:port URL"},
	} {
		if _, err := NewServer(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}

	srv := startServer(t, t.TempDir(), false)
	if srv.ClusterURL() != "" || srv.MetaLeader() != "" || len(srv.Peers()) != 0 {
		t.Errorf("a single server: cluster URL %q, leader %q, peers %v", srv.ClusterURL(), srv.MetaLeader(), srv.Peers())
	}
	c := connect(t, srv, Options{})
	if r := ClusterReplicas(c.NC); r != 1 {
		t.Errorf("a single server: %d replicas, want 1", r)
	}
	st, err := c.JS.Stream(testCtx(t), "KV_objects")
	require_NoError(t, err)
	if r := st.CachedInfo().Config.Replicas; r != 1 {
		t.Errorf("a single server's objects bucket has %d replicas, want 1", r)
	}
}
