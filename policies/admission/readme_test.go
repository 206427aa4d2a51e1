package admission

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

// TestReadmeShowsDefaultsAndRules checks that the README's Configuration
// section shows the defaults and that it documents every rule.
// cmd/ucgate checks its sections and examples.
func TestReadmeShowsDefaultsAndRules(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
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
