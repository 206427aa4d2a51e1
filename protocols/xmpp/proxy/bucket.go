package proxy

// bucket is a token bucket as a theoretical arrival time (GCRA): rate
// tokens a second, at most burst at once. It is used by one goroutine and
// never allocates.
type bucket struct {
	tat      int64 // ns: when the bucket is full again
	interval int64 // ns per token
	limit    int64 // ns: burst * interval
}

func (b *bucket) init(rate float64, burst int) {
	b.interval = int64(1e9 / rate)
	if b.interval < 1 {
		b.interval = 1
	}
	b.limit = int64(burst) * b.interval
}

// take takes a token at now (ns) and reports whether there was one.
func (b *bucket) take(now int64) bool {
	tat := max(b.tat, now) + b.interval
	if tat-now > b.limit {
		return false
	}
	b.tat = tat
	return true
}
