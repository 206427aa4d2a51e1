package rtpguard

import (
	"os"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

// TestReadme checks that README.md has its sections in order and that
// every ```yaml ucgate example decodes (unknown keys are errors) and
// validates as this section. cmd/ucgate checks the examples as whole files.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	at := 0
	for _, h := range []string{"# rtpguard\n", "## Name\n", "## Description\n", "## Configuration\n", "## Examples\n", "## Metrics\n", "## Journal\n"} {
		i := strings.Index(md[at:], h)
		if i < 0 {
			t.Fatalf("README.md: %q missing or out of order", strings.TrimSpace(h))
		}
		at += i + len(h)
	}
	n := 0
	var block *strings.Builder
	for _, line := range strings.Split(md, "\n") {
		switch {
		case block == nil && strings.TrimSpace(line) == "```yaml ucgate":
			block = &strings.Builder{}
		case block != nil && strings.TrimSpace(line) == "```":
			n++
			var file struct {
				Policies struct {
					Section Config `yaml:"rtpguard"`
				} `yaml:"policies"`
			}
			file.Policies.Section = Defaults()
			if _, err := config.Decode([]byte(block.String()), "README.md", &file); err != nil {
				t.Errorf("example %d: %v", n, err)
			} else if err := file.Policies.Section.Validate(); err != nil {
				t.Errorf("example %d: %v", n, err)
			}
			if !strings.HasPrefix(block.String(), "policies:\n  rtpguard:\n") {
				t.Errorf("example %d does not open with policies.rtpguard", n)
			}
			block = nil
		case block != nil:
			block.WriteString(line + "\n")
		}
	}
	if n == 0 {
		t.Error("README.md has no yaml ucgate example")
	}
}
