package triggers

import (
	"os"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// TestReadmeTriggersBuild checks that the README's Configuration block and
// each ```yaml ucgate example decode strictly, validate, list a trigger
// and build. cmd/ucgate checks the sections and validates the examples
// as whole files.
func TestReadmeTriggersBuild(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	_, ref, _ := strings.Cut(md, "## Configuration\n\n```yaml\n")
	ref, _, _ = strings.Cut(ref, "```")
	blocks := []string{ref}
	for _, block := range strings.Split(md, "```yaml ucgate\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		blocks = append(blocks, block)
	}
	if len(blocks) < 3 {
		t.Fatalf("%d blocks", len(blocks))
	}
	for i, block := range blocks {
		var doc struct {
			Policies struct {
				Triggers Config `yaml:"triggers"`
			} `yaml:"policies"`
		}
		doc.Policies.Triggers = Defaults()
		if _, err := config.Decode([]byte(block), "README.md", &doc); err != nil {
			t.Errorf("block %d: %v", i, err)
			continue
		}
		cfg := doc.Policies.Triggers
		if err := cfg.Validate(); err != nil {
			t.Errorf("block %d: %v", i, err)
			continue
		}
		if len(cfg.List) == 0 {
			t.Errorf("block %d has no trigger", i)
		}
		tr, err := New(cfg, core.Deps{Blocker: newBlocker()})
		if err != nil {
			t.Errorf("block %d: %v", i, err)
			continue
		}
		tr.Close()
	}
}
