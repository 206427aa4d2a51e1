package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/ucgate/ucgate/core"
)

// Store is core.State on SQLite, with every row also held in memory: reads
// never touch the disk, writes go to both.
type Store struct {
	db  *sql.DB
	now func() time.Time

	mu     sync.RWMutex
	blocks map[string]core.Block
	users  map[string]core.User

	version int64 // PRAGMA data_version when last loaded
	stop    chan struct{}
	done    chan struct{}
}

// RefreshInterval is how often a Store looks for changes another process
// (`ucgate users add`) committed to the database.
const RefreshInterval = 2 * time.Second

var _ core.State = (*Store)(nil)

// ErrClosed reports use after Close.
var ErrClosed = errors.New("state: closed")

const schema = `
CREATE TABLE IF NOT EXISTS blocks (
	key TEXT PRIMARY KEY,
	until TEXT NOT NULL,
	created TEXT NOT NULL,
	rule TEXT NOT NULL,
	reason TEXT NOT NULL,
	offences INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
	name TEXT PRIMARY KEY,
	record TEXT NOT NULL
);
PRAGMA user_version = 1;
`

// Open opens (creating if needed) the state database at path; a relative
// path is relative to dataDir. An empty path keeps the state in memory only.
func Open(path, dataDir string) (*Store, error) {
	s := &Store{now: time.Now, blocks: map[string]core.Block{}, users: map[string]core.User{}}
	if path == "" {
		return s, nil
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dataDir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state: create %s: %w", filepath.Dir(path), err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: schema of %s: %w", path, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.watch()
	return s, nil
}

// watch reloads the memory copy when another connection has committed to
// the database since the last load (SQLite's data_version changes then).
func (s *Store) watch() {
	defer close(s.done)
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Refresh(); err != nil {
				continue
			}
		}
	}
}

// Refresh reloads the memory copy if another process changed the
// database.
func (s *Store) Refresh() error {
	var v int64
	if err := s.db.QueryRow(`PRAGMA data_version`).Scan(&v); err != nil {
		return err
	}
	s.mu.RLock()
	same := v == s.version
	s.mu.RUnlock()
	if same {
		return nil
	}
	return s.load()
}

func (s *Store) load() error {
	var version int64
	if err := s.db.QueryRow(`PRAGMA data_version`).Scan(&version); err != nil {
		return fmt.Errorf("state: data version: %w", err)
	}
	blocks, users := map[string]core.Block{}, map[string]core.User{}
	rows, err := s.db.Query(`SELECT key, until, created, rule, reason, offences FROM blocks`)
	if err != nil {
		return fmt.Errorf("state: read blocks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b core.Block
		var until, created string
		if err := rows.Scan(&b.Key, &until, &created, &b.Rule, &b.Reason, &b.Offences); err != nil {
			return fmt.Errorf("state: read blocks: %w", err)
		}
		b.Until, _ = time.Parse(time.RFC3339Nano, until)
		b.Created, _ = time.Parse(time.RFC3339Nano, created)
		blocks[b.Key] = b
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: read blocks: %w", err)
	}
	urows, err := s.db.Query(`SELECT record FROM users`)
	if err != nil {
		return fmt.Errorf("state: read users: %w", err)
	}
	defer urows.Close()
	for urows.Next() {
		var rec string
		var u core.User
		if err := urows.Scan(&rec); err != nil {
			return fmt.Errorf("state: read users: %w", err)
		}
		if err := json.Unmarshal([]byte(rec), &u); err != nil {
			return fmt.Errorf("state: user record: %w", err)
		}
		users[u.Name] = u
	}
	if err := urows.Err(); err != nil {
		return fmt.Errorf("state: read users: %w", err)
	}
	s.mu.Lock()
	s.blocks, s.users, s.version = blocks, users, version
	s.mu.Unlock()
	return nil
}

// PutBlock implements core.State.
func (s *Store) PutBlock(ctx context.Context, b core.Block) error {
	if b.Created.IsZero() {
		b.Created = s.now()
	}
	if s.db != nil {
		_, err := s.db.ExecContext(ctx, `INSERT INTO blocks (key, until, created, rule, reason, offences) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(key) DO UPDATE SET until=excluded.until, created=excluded.created, rule=excluded.rule, reason=excluded.reason, offences=excluded.offences`,
			b.Key, b.Until.UTC().Format(time.RFC3339Nano), b.Created.UTC().Format(time.RFC3339Nano), b.Rule, b.Reason, b.Offences)
		if err != nil {
			return fmt.Errorf("state: put block %s: %w", b.Key, err)
		}
	}
	s.mu.Lock()
	s.blocks[b.Key] = b
	s.mu.Unlock()
	return nil
}

// DeleteBlock implements core.State.
func (s *Store) DeleteBlock(ctx context.Context, key string) error {
	if s.db != nil {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM blocks WHERE key = ?`, key); err != nil {
			return fmt.Errorf("state: delete block %s: %w", key, err)
		}
	}
	s.mu.Lock()
	delete(s.blocks, key)
	s.mu.Unlock()
	return nil
}

// Blocks implements core.State: the blocks that have not expired, by key.
func (s *Store) Blocks(ctx context.Context) ([]core.Block, error) {
	now := s.now()
	s.mu.RLock()
	out := make([]core.Block, 0, len(s.blocks))
	for _, b := range s.blocks {
		if b.Until.After(now) {
			out = append(out, b)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// PutUser implements core.State.
func (s *Store) PutUser(ctx context.Context, u core.User) error {
	if u.Name == "" {
		return errors.New("state: user without a name")
	}
	if s.db != nil {
		rec, err := json.Marshal(u)
		if err != nil {
			return err
		}
		if _, err := s.db.ExecContext(ctx, `INSERT INTO users (name, record) VALUES (?, ?)
			ON CONFLICT(name) DO UPDATE SET record=excluded.record`, u.Name, string(rec)); err != nil {
			return fmt.Errorf("state: put user %s: %w", u.Name, err)
		}
	}
	s.mu.Lock()
	s.users[u.Name] = u
	s.mu.Unlock()
	return nil
}

// GetUser implements core.State.
func (s *Store) GetUser(ctx context.Context, name string) (core.User, error) {
	s.mu.RLock()
	u, ok := s.users[name]
	s.mu.RUnlock()
	if !ok {
		return core.User{}, core.ErrNotFound
	}
	return u, nil
}

// DeleteUser implements core.State.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	s.mu.RLock()
	_, ok := s.users[name]
	s.mu.RUnlock()
	if !ok {
		return core.ErrNotFound
	}
	if s.db != nil {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name); err != nil {
			return fmt.Errorf("state: delete user %s: %w", name, err)
		}
	}
	s.mu.Lock()
	delete(s.users, name)
	s.mu.Unlock()
	return nil
}

// Users implements core.State, sorted by name.
func (s *Store) Users(ctx context.Context) ([]core.User, error) {
	s.mu.RLock()
	out := make([]core.User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Close implements core.State.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	close(s.stop)
	<-s.done
	err := s.db.Close()
	s.db = nil
	return err
}
