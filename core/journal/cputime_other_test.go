//go:build !unix

package journal

import "time"

// cpuTime is not measured here: benchmarks leave out their CPU metric.
func cpuTime() time.Duration { return 0 }
