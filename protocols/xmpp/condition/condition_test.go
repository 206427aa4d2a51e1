package condition

import (
	"testing"

	"github.com/ucgate/ucgate/core"
)

func TestEveryReasonMapped(t *testing.T) {
	for _, r := range core.AllReasons() {
		if _, ok := stanzaConditions[r]; !ok {
			t.Errorf("reason %v has no stanza error", r)
		}
		if _, ok := streamConditions[r]; !ok {
			t.Errorf("reason %v has no stream error", r)
		}
	}
	if typ, cond := Stanza(core.Reason(250)); typ != "cancel" || cond != "undefined-condition" {
		t.Errorf("unknown reason: %s %s", typ, cond)
	}
	if Stream(core.Reason(250)) != "undefined-condition" {
		t.Error("unknown reason: stream condition")
	}
}
