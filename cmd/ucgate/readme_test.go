package main

import (
	"os"

	"github.com/ucgate/ucgate/core/config"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeConfigsAreValid checks every ```yaml ucgate block in the
// README and in policies/*/README.md with the same code as `ucgate check`.
func TestReadmeConfigsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../policies/*/README.md")
	files = append(files, "../../README.md")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range yamlBlocks(string(b)) {
			n++
			if err := checkOverDefault([]byte(block), f); err != nil {
				t.Errorf("%s, yaml block %d:\n%v", f, i+1, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no ```yaml ucgate blocks found")
	}
}

// checkOverDefault validates a README fragment laid over the embedded
// default configuration (a policy's example names only its own section).
func checkOverDefault(block []byte, name string) error {
	cfg := defaults()
	if _, err := config.Decode(defaultYAML, "(embedded default)", &cfg); err != nil {
		return err
	}
	root, err := config.Decode(block, name, &cfg)
	if err != nil {
		return err
	}
	return config.Locate(root, name, cfg.Validate())
}

func yamlBlocks(md string) []string {
	var out []string
	var cur *strings.Builder
	for _, line := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```yaml ucgate":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}
