package natsbus

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
)

// BenchmarkKV measures, with SyncAlways off and on, the latency from a Put
// to its arrival on a Watch (p50 and p99 reported as extra metrics) and the
// throughput of asynchronous puts (puts/s).
//
//	go test -run '^$' -bench BenchmarkKV -benchtime 2000x ./bus/natsbus/
func BenchmarkKV(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", syncAlways), func(b *testing.B) {
			c := connect(b, startServer(b, b.TempDir(), syncAlways), Options{})
			ctx := testCtx(b)
			b.Run("put-to-watch", func(b *testing.B) {
				ch, err := c.Status.Watch(ctx, "bench.>")
				require_NoError(b, err)
				<-ch
				lat := make([]time.Duration, 0, b.N)
				val := make([]byte, 512)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					_, err := c.Status.Put(ctx, "bench.k"+strconv.Itoa(i%100), val)
					require_NoError(b, err)
					<-ch
					lat = append(lat, time.Since(start))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
			b.Run("async-put", func(b *testing.B) {
				val := make([]byte, 512)
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					// With SyncAlways the default stall wait (200 ms) is
					// shorter than draining a full window of 4,000.
					_, err := c.JS.PublishAsync("$KV.status.async.k"+strconv.Itoa(i%1000), val,
						jetstream.WithStallWait(10*time.Second))
					require_NoError(b, err)
				}
				select {
				case <-c.JS.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("async puts not acknowledged")
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
			})
		})
	}
}

// BenchmarkList compares the two ways to list 10,000 keys: one watcher
// over the latest value of each key (what KV.List does), and listing the
// keys then getting each one.
//
//	go test -run '^$' -bench BenchmarkList -benchtime 5x ./bus/natsbus/
func BenchmarkList(b *testing.B) {
	c := connect(b, startServer(b, b.TempDir(), false), Options{})
	ctx := testCtx(b)
	kv := c.Objects.(*KV)
	const n = 10000
	val := make([]byte, 1024)
	for i := range n {
		_, err := c.JS.PublishAsync("$KV.objects.Pod.default.p"+strconv.Itoa(i), val)
		require_NoError(b, err)
	}
	<-c.JS.PublishAsyncComplete()
	for name, list := range map[string]func(context.Context, string) ([]bus.Entry, error){
		"watch": kv.List,
		"keys":  kv.listByKeys,
	} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				got, err := list(ctx, "Pod.>")
				require_NoError(b, err)
				if len(got) != n {
					b.Fatalf("listed %d, want %d", len(got), n)
				}
			}
		})
	}
}
