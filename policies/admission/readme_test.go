package admission

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

// TestReadme checks the README's sections and that each ```yaml ucgate
// example decodes strictly onto the defaults and validates (cmd/ucgate
// checks them again as whole files).
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	var sections []string
	for _, line := range strings.Split(md, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			sections = append(sections, h)
		}
	}
	if got, want := strings.Join(sections, ", "), "Name, Description, Configuration, Examples, Metrics, Journal"; got != want {
		t.Errorf("sections: %s, want %s", got, want)
	}
	blocks := 0
	for _, block := range strings.Split(md, "```yaml ucgate\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		blocks++
		var doc struct {
			Policies struct {
				Admission Config `yaml:"admission"`
			} `yaml:"policies"`
		}
		doc.Policies.Admission = Defaults()
		if _, err := config.Decode([]byte(block), "README.md", &doc); err != nil {
			t.Errorf("example %d: %v", blocks, err)
			continue
		}
		if err := doc.Policies.Admission.Validate(); err != nil {
			t.Errorf("example %d: %v", blocks, err)
		}
	}
	if blocks == 0 {
		t.Error("no examples")
	}
	// The Configuration section shows the defaults.
	_, ref, ok := strings.Cut(md, "## Configuration\n\n```yaml\n")
	ref, _, _ = strings.Cut(ref, "```")
	var doc struct {
		Policies struct {
			Admission Config `yaml:"admission"`
		} `yaml:"policies"`
	}
	if _, err := config.Decode([]byte(ref), "README.md", &doc); !ok || err != nil {
		t.Fatalf("configuration block: %v", err)
	}
	got, want := doc.Policies.Admission, Defaults()
	if len(got.Trunks) == 0 {
		got.Trunks = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the Configuration section shows\n%+v\nthe defaults are\n%+v", got, want)
	}
	for _, r := range ruleNames {
		if !strings.Contains(md, "`"+r+"`") {
			t.Errorf("rule %s is not documented", r)
		}
	}
}
