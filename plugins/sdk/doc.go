// Package sdk is the ucgate plugin contract: the versioned gRPC protocol
// (proto/plugin.proto, generated into package pb and checked in; `make
// proto` regenerates it), the go-plugin handshake, the list of contract
// versions the gateway speaks, and the Go side of the three plugin kinds:
//
//   - protocol: the plugin owns its sockets and its protocol and exchanges
//     neutral events (session offer, answer, update, end; instant message;
//     presence; registration) with the gateway, which runs its stages on
//     them, journals them and bridges them to the other adapters;
//   - media: the plugin receives the RTP of one stream direction and
//     returns RTP (the video transcoder is one);
//   - stage: an external security check run as a pipeline stage, under a
//     deadline per call.
//
// A Go plugin calls Serve with its implementation; plugins in other
// languages implement the same proto (plugins/irc is one, in Python) and
// the go-plugin handshake described in plugins/README.md.
//
// The package follows go-plugin's examples/grpc: proto, Go interfaces,
// handshake and version list together. It imports nothing of the gateway
// (not core, not the host), so that a plugin links only the contract.
package sdk
