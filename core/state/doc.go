// Package state is the embedded implementation of core.State: what one
// gateway keeps across restarts (the blacklist, user credentials) in a
// SQLite file in the data directory (state.db), with a copy in memory for
// reads. A cluster of gateways uses a Redis implementation of the same
// interface instead.
//
// It owns the state.db schema. It imports nothing from the module but core.
package state
