package journal

import (
	"context"
	"testing"
)

// BenchmarkTransaction measures what Transaction costs its caller: with no
// sink ("enqueue": the copy and the queue alone) and with SQLite draining
// the queue ("sqlite": once the queue is full, this is the writer's
// sustained rate).
func BenchmarkTransaction(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sqlite bool
	}{{"enqueue", false}, {"sqlite", true}} {
		cfg := testConfig()
		cfg.Queue = Defaults().Queue
		cfg.SQLite.Enabled = bc.sqlite
		tx := sampleTx(3)
		b.Run(bc.name, func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			for b.Loop() {
				j.Transaction(tx)
			}
			j.Close()
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					j.Transaction(tx)
				}
			})
			j.Close()
		})
	}
}

// BenchmarkCDRGroupCommit measures durable CDRs per second, one caller at a
// time and with many callers sharing commits.
func BenchmarkCDRGroupCommit(b *testing.B) {
	for _, sync := range []string{"normal", "full"} {
		cfg := testConfig()
		cfg.SQLite.Synchronous = sync
		c := sampleCDR(2)
		b.Run("sync="+sync+"/serial", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			for b.Loop() {
				if err := j.CDR(context.Background(), c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
		})
		b.Run("sync="+sync+"/parallel", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			b.SetParallelism(64)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := j.CDR(context.Background(), c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
		})
	}
}
