package natsauth_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
)

// BenchmarkAuth measures what TLS and the identities cost a client of the
// bus: put-to-watch latency of a node writing its own status, against the
// same on a server without them, in one run.
func BenchmarkAuth(b *testing.B) {
	for _, auth := range []bool{false, true} {
		b.Run(fmt.Sprintf("auth=%v", auth), func(b *testing.B) {
			ctx := context.Background()
			var c *natsbus.Conn
			if auth {
				bus := natsauthtest.Start(b)
				c = bus.Connect(b, natsauth.RoleNode, "bench", natsbus.Options{})
			} else {
				srv, err := natsbus.NewServer(natsbus.ServerOptions{DataDir: b.TempDir(), Port: -1})
				if err != nil {
					b.Fatal(err)
				}
				if err := srv.Start(ctx); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(srv.Shutdown)
				if c, err = natsbus.Connect(ctx, srv.ClientURL(), natsbus.Options{}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(c.Close)
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := c.Status.Watch(ctx, "bench.>")
			if err != nil {
				b.Fatal(err)
			}
			<-ch
			lat := make([]time.Duration, 0, b.N)
			val := make([]byte, 512)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := c.Status.Put(ctx, "bench.default.p"+strconv.Itoa(i%100), val); err != nil {
					b.Fatal(err)
				}
				<-ch
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
