package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ucgate/ucgate/core"
)

// Record types, in the "type" field of a JSON line.
const (
	TypeTransaction = "transaction"
	TypeSecurity    = "security"
	TypeCDR         = "cdr"
	// TypeMessage is a captured instant message (core.CapturedMessage).
	TypeMessage = "message"
)

// msgLine is a captured message's line. Its own "type" is the record
// type: the message's (chat, normal, ...) is "message_type".
type msgLine struct {
	Type string `json:"type"`
	*core.CapturedMessage
	MessageType string `json:"message_type,omitempty"`
}

func encodeMsg(m *core.CapturedMessage) ([]byte, error) {
	return json.Marshal(msgLine{Type: TypeMessage, CapturedMessage: m, MessageType: m.Type})
}

// txLine, secLine and cdrLine are the JSON forms of the records: the record's own
// fields after a "type" field.
type txLine struct {
	Type string `json:"type"`
	*core.Transaction
}

type secLine struct {
	Type string `json:"type"`
	*core.SecurityEvent
}

type cdrLine struct {
	Type string `json:"type"`
	*core.CDR
}

func encodeTx(t *core.Transaction) ([]byte, error) {
	return json.Marshal(txLine{Type: TypeTransaction, Transaction: t})
}

func encodeSec(e *core.SecurityEvent) ([]byte, error) {
	return json.Marshal(secLine{Type: TypeSecurity, SecurityEvent: e})
}

func encodeCDR(c *core.CDR) ([]byte, error) {
	return json.Marshal(cdrLine{Type: TypeCDR, CDR: c})
}

// jsonlSink appends one JSON object per line to a file. Batches of
// transactions and security events are flushed to the file; CDR batches
// are also synced to the disk.
type jsonlSink struct {
	path string
	f    *os.File
	w    *bufio.Writer
	// torn is set after a failed write, which may have left half a line in
	// the file: the next write starts on a new line.
	torn bool
}

func openJSONL(path string) (*jsonlSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return &jsonlSink{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (s *jsonlSink) name() string { return "jsonl" }

func (s *jsonlSink) write(b *batch) (txErr, secErr, cdrErr error) {
	if len(b.txs) > 0 {
		txErr = s.lines(len(b.txs), func(i int) ([]byte, error) { return encodeTx(b.txs[i]) }, false)
	}
	if len(b.secs) > 0 {
		secErr = s.lines(len(b.secs), func(i int) ([]byte, error) { return encodeSec(b.secs[i]) }, false)
	}
	if len(b.msgs) > 0 {
		// Counted with the transactions, as the SQLite sink does.
		txErr = errors.Join(txErr, s.lines(len(b.msgs), func(i int) ([]byte, error) { return encodeMsg(b.msgs[i]) }, false))
	}
	if len(b.cdrs) > 0 {
		cdrErr = s.lines(len(b.cdrs), func(i int) ([]byte, error) { return encodeCDR(b.cdrs[i]) }, true)
	}
	return txErr, secErr, cdrErr
}

// lines appends n lines and flushes them, syncing the file if asked. After
// a failure the buffer is dropped, so that the next batch can succeed once
// the disk has room again.
func (s *jsonlSink) lines(n int, encode func(int) ([]byte, error), sync bool) (err error) {
	defer func() {
		if err != nil {
			s.w.Reset(s.f)
			s.torn = true
		}
	}()
	if s.torn {
		s.w.WriteByte('\n')
	}
	for i := range n {
		b, err := encode(i)
		if err != nil {
			return err
		}
		s.w.Write(b)
		s.w.WriteByte('\n') // a bufio.Writer keeps its first error for Flush
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.torn = false
	if sync {
		return s.f.Sync()
	}
	return nil
}

func (s *jsonlSink) close() error {
	return errors.Join(s.w.Flush(), s.f.Sync(), s.f.Close())
}
