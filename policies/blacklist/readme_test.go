package blacklist

import (
	"os"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

// TestReadme checks the README's sections and that every ```yaml ucgate
// example decodes strictly onto the defaults and validates.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	var sections []string
	var blocks []string
	var cur *strings.Builder
	for _, line := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "## "):
			sections = append(sections, strings.TrimPrefix(line, "## "))
		case cur == nil && strings.TrimSpace(line) == "```yaml ucgate":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if got, want := strings.Join(sections, ", "), "Name, Description, Configuration, Examples, Metrics, Journal"; got != want {
		t.Errorf("sections %s, want %s", got, want)
	}
	if len(blocks) == 0 {
		t.Fatal("no ```yaml ucgate examples")
	}
	for i, y := range blocks {
		var doc struct {
			Policies struct {
				Stage Config `yaml:"blacklist"`
			} `yaml:"policies"`
		}
		doc.Policies.Stage = Defaults()
		root, err := config.Decode([]byte(y), "README.md", &doc)
		if err == nil {
			err = config.Locate(root, "README.md", config.Nest("policies.blacklist", doc.Policies.Stage.Validate()))
		}
		if err != nil {
			t.Errorf("example %d:\n%s\n%v", i+1, y, err)
		}
		if !strings.HasPrefix(y, "policies:\n  blacklist:\n") {
			t.Errorf("example %d does not start with policies.blacklist:\n%s", i+1, y)
		}
	}
}
