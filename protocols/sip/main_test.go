package sip

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	TuneTimers() // before any peer's user agent runs
	os.Exit(m.Run())
}
