package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with one configuration field.
type FieldError struct {
	Path string // dotted path from the root: "sip.listeners[1].listen"
	Msg  string
	File string
	Line int // 1-based; 0 when the field is not in the file (an embedded default)
	Col  int
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
		if e.Line > 0 {
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Col))
			b.WriteByte(':')
		}
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Invalid reports a problem with the field at path (relative to the
// section being validated).
func Invalid(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Nest prefixes the paths of every FieldError in err with prefix, so that a
// section's Validate can report its own field names and its parent places
// them. Other errors are wrapped as errors of the prefix itself.
func Nest(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.Path = join(prefix, fe.Path)
			out = append(out, &c)
			continue
		}
		out = append(out, &FieldError{Path: prefix, Msg: e.Error()})
	}
	return errors.Join(out...)
}

func join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

// Flatten returns the leaves of a tree of joined errors.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
