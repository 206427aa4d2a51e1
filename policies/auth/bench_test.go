package auth

import (
	"context"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// BenchmarkDecideChallenge is a REGISTER without credentials: a new nonce
// and a challenge.
func BenchmarkDecideChallenge(b *testing.B) {
	f := newFixture(b, "")
	f.s.alerts = nil
	ev := register("alice")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := f.s.Decide(ctx, ev); v.Action != core.Challenge {
			b.Fatal(v)
		}
	}
}

// BenchmarkDecideSuccess is a REGISTER answering a challenge correctly,
// each with a nonce-count of its own (the credentials are made outside the
// timer, a chunk at a time).
func BenchmarkDecideSuccess(b *testing.B) {
	for _, alg := range []string{"SHA-256", "MD5"} {
		b.Run(alg, func(b *testing.B) {
			f := newFixture(b, "max_nonces: 1048576")
			f.s.alerts = nil
			ctx := context.Background()
			const chunk = 4096
			evs := make([]core.Event, chunk)
			creds := make([]core.Credentials, chunk)
			var ch *core.AuthChallenge
			nc := uint32(0)
			refill := func() {
				b.StopTimer()
				for i := range evs {
					if nc%1_000_000 == 0 {
						ch = f.challenge(b, register("alice"))
						nc = 0
					}
					nc++
					evs[i] = *register("alice")
					creds[i] = *answer(ch, alg, "alice", "secret", "REGISTER", evs[i].Target, nc)
					evs[i].Credentials = &creds[i]
				}
				b.StartTimer()
			}
			i := chunk
			b.ReportAllocs()
			for b.Loop() {
				if i == chunk {
					refill()
					i = 0
				}
				if v, _ := f.s.Decide(ctx, &evs[i]); v.Action != core.Allow {
					b.Fatal(v)
				}
				i++
			}
		})
	}
}

// BenchmarkDecideFailure is a wrong password for an unknown user: the
// dummy digest and a security event.
func BenchmarkDecideFailure(b *testing.B) {
	f := newFixture(b, "")
	f.s.alerts = nil
	ev := f.authed(b, register("mallory"), "SHA-256", "mallory", "guess")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := f.s.Decide(ctx, ev); v.Action != core.Refuse {
			b.Fatal(v)
		}
	}
}

// BenchmarkDecidePass is a request the stage does not judge (an in-dialog
// request).
func BenchmarkDecidePass(b *testing.B) {
	f := newFixture(b, "")
	ev := invite("alice")
	ev.InDialog, ev.DialogKnown = true, true
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := f.s.Decide(ctx, ev); v.Action != core.Allow {
			b.Fatal(v)
		}
	}
}
