package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is what every Config type implements.
type Validator interface {
	Validate() error
}

// Decode decodes a YAML document onto out, which normally already holds the
// embedded defaults: keys present in data replace them, keys absent keep
// them. Unknown keys are errors. The returned node is the document's root,
// for Locate.
func Decode(data []byte, file string, out any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &root, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return &root, yamlError(file, err)
	}
	return &root, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlError turns yaml.v3's "yaml: unmarshal errors:\n  line 3: ..." into
// one FieldError per line, so they print like validation errors.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var out []error
		for _, e := range te.Errors {
			fe := &FieldError{File: file, Msg: e}
			if m := yamlLine.FindStringSubmatch(e); m != nil {
				fe.Line, _ = strconv.Atoi(m[1])
				fe.Col = 1
				fe.Msg = m[2]
			}
			out = append(out, fe)
		}
		return errors.Join(out...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{File: file, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Col = 1
		fe.Msg = m[2]
	}
	return fe
}

// Locate fills in file, line and column of every FieldError in err by
// finding its path in root. A path that is not in the file (the value came
// from the embedded defaults) keeps line 0; a path that is only partly
// there points at its deepest ancestor that is.
func Locate(root *yaml.Node, file string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			out = append(out, e)
			continue
		}
		c := *fe
		c.File = file
		if n := find(root, c.Path); n != nil {
			c.Line, c.Col = n.Line, n.Column
		}
		out = append(out, &c)
	}
	return errors.Join(out...)
}

// find walks root along a path like "sip.listeners[1].listen" and returns
// the value node, or the deepest node reached.
func find(root *yaml.Node, path string) *yaml.Node {
	if root == nil {
		return nil
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var best *yaml.Node
	for _, step := range splitPath(path) {
		var next *yaml.Node
		if step.index >= 0 {
			if n.Kind == yaml.SequenceNode && step.index < len(n.Content) {
				next = n.Content[step.index]
			}
		} else if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == step.key {
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return best
		}
		n, best = next, next
	}
	return best
}

type pathStep struct {
	key   string
	index int
}

func splitPath(path string) []pathStep {
	var steps []pathStep
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				steps = append(steps, pathStep{key: part, index: -1})
				break
			}
			if i > 0 {
				steps = append(steps, pathStep{key: part[:i], index: -1})
			}
			j := strings.IndexByte(part[i:], ']')
			if j < 0 {
				break
			}
			idx, _ := strconv.Atoi(part[i+1 : i+j])
			steps = append(steps, pathStep{index: idx})
			part = part[i+j+1:]
		}
	}
	return steps
}

// Index renders a list index for a path: Index("listeners", 2) = "listeners[2]".
func Index(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }
