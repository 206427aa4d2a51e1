// Package config owns how ucgate reads its one YAML file: strict decoding
// (unknown keys are errors), validation errors that name the field, and the
// mapping of those fields back to the file's lines, so that `ucgate check`
// prints "ucgate.yaml:14:11: policies.ratelimit.rate: must be above 0".
//
// Every section's Config type has a fast, read-only Validate() error that
// reports every problem with Invalid, nested under its parent with Nest.
package config
