package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
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

// policySections are the sections of a policy README, in the style
// guide's order.
var policySections = []string{"Name", "Description", "Configuration", "Examples", "Metrics", "Journal"}

// TestPolicyReadmes checks the shape of the README of every folder under
// policies/: its title is the policy's name, its sections are
// policySections in order, and it has ```yaml ucgate examples that each
// open with the policy's own section (TestReadmeConfigsAreValid checks
// that they are valid).
func TestPolicyReadmes(t *testing.T) {
	dirs, _ := filepath.Glob("../../policies/*")
	n := 0
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		n++
		name := filepath.Base(dir)
		f := filepath.Join(dir, "README.md")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		md := string(b)
		if title, _, _ := strings.Cut(md, "\n"); title != "# "+name {
			t.Errorf("%s: title %q, want %q", f, title, "# "+name)
		}
		if got, want := strings.Join(headings(md), ", "), strings.Join(policySections, ", "); got != want {
			t.Errorf("%s: sections %s, want %s", f, got, want)
		}
		blocks := yamlBlocks(md)
		if len(blocks) == 0 {
			t.Errorf("%s: no ```yaml ucgate example", f)
		}
		for i, block := range blocks {
			if !strings.HasPrefix(block, "policies:\n  "+name+":\n") {
				t.Errorf("%s, yaml block %d does not start with policies.%s:\n%s", f, i+1, name, block)
			}
		}
	}
	if n == 0 {
		t.Fatal("no folders under policies/")
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

// headings returns the "## " headings of md, leaving out code blocks.
func headings(md string) []string {
	var out []string
	code := false
	for _, line := range strings.Split(md, "\n") {
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "```"):
			code = !code
		case !code && strings.HasPrefix(line, "## "):
			out = append(out, strings.TrimPrefix(line, "## "))
		}
	}
	return out
}
