package journal

import (
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the journal section of ucgate.yaml.
type Config struct {
	// SQLite is the durable sink, on by default.
	SQLite SQLiteConfig `yaml:"sqlite"`
	// JSONL appends every record to a JSON Lines file.
	JSONL JSONLConfig `yaml:"jsonl"`
	// Syslog sends every record to a syslog collector (RFC 5424).
	Syslog SyslogConfig `yaml:"syslog"`
	// Queue is how many transaction records wait for the sinks before
	// Transaction blocks its caller. Default 65536; at most 16777216.
	Queue int `yaml:"queue"`
	// Retention is how long the SQLite sink keeps records, a Go duration
	// ("2160h" is 90 days): transactions and security events by their
	// time, CDRs by the end of their session. Older rows are deleted at
	// start and every 10 minutes, a few thousand at a time. "0s" keeps
	// everything; otherwise at least 1h. Default 2160h (90 days).
	// Check what you must keep: regulators may require records of
	// communications for longer than the default (MiFID II: 5 years,
	// "43830h"), while data protection law asks for no longer than needed.
	// Then check the disk: the journal grows by about 2 KB per call, 17 GB
	// a day at 100 calls per second. The JSON Lines file is not pruned
	// (see JSONLConfig.Path).
	Retention time.Duration `yaml:"retention"`
}

// SQLiteConfig configures the SQLite sink.
type SQLiteConfig struct {
	// Enabled turns the SQLite sink on. Default true.
	Enabled bool `yaml:"enabled"`
	// Path is the database file; a relative path is relative to the data
	// directory. Default "journal.db".
	Path string `yaml:"path"`
	// Synchronous is SQLite's synchronous setting in WAL mode: "normal"
	// (default: a committed CDR survives a crash of ucgate, the last commits
	// may be lost if the machine loses power) or "full" (also survives a
	// power loss, at the cost of one fsync per commit).
	Synchronous string `yaml:"synchronous"`
}

// JSONLConfig configures the JSON Lines sink.
type JSONLConfig struct {
	// Path is the file records are appended to, one JSON object per line;
	// a relative path is relative to the data directory. Empty (the
	// default) turns the sink off. The journal never prunes or rotates
	// it: rotate it with logrotate's copytruncate (the file is opened for
	// appending, so writes go on at its new end).
	Path string `yaml:"path"`
}

// SyslogConfig configures the syslog sink.
type SyslogConfig struct {
	// Address is the collector's host:port. Empty (the default) turns the
	// sink off.
	Address string `yaml:"address"`
	// Network is "udp" (default, one datagram per record) or "tcp" (RFC 6587
	// octet counting, reconnecting after a failure).
	Network string `yaml:"network"`
	// Facility is the syslog facility: kern, user, mail, daemon, auth,
	// syslog, lpr, news, uucp, cron, authpriv, ftp or local0..local7.
	// Default local0.
	Facility string `yaml:"facility"`
	// AppName is the APP-NAME field, 1 to 48 printable ASCII characters.
	// Default "ucgate".
	AppName string `yaml:"app_name"`
}

const (
	// maxQueue bounds Config.Queue: the queue is allocated up front.
	maxQueue = 1 << 24
	// defaultRetention is Config.Retention's default, 90 days.
	defaultRetention = 90 * 24 * time.Hour
	// minRetention is the shortest retention but 0: a shorter one is
	// taken for a typing mistake ("90m" for "90d").
	minRetention = time.Hour
)

// Defaults returns the journal configuration used when ucgate.yaml says
// nothing: SQLite on in the data directory keeping 90 days, JSONL and
// syslog off.
func Defaults() Config {
	return Config{
		SQLite:    SQLiteConfig{Enabled: true, Path: "journal.db", Synchronous: "normal"},
		Syslog:    SyslogConfig{Network: "udp", Facility: "local0", AppName: "ucgate"},
		Queue:     65536,
		Retention: defaultRetention,
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	errs := []error{
		config.Nest("sqlite", c.SQLite.Validate()),
		config.Nest("syslog", c.Syslog.Validate()),
	}
	if c.Queue <= 0 || c.Queue > maxQueue {
		errs = append(errs, config.Invalid("queue", "must be between 1 and %d, got %d", maxQueue, c.Queue))
	}
	if c.Retention != 0 && c.Retention < minRetention {
		errs = append(errs, config.Invalid("retention", "must be 0s (keep everything) or at least %v, got %v", minRetention, c.Retention))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the SQLite sink's configuration.
func (c SQLiteConfig) Validate() error {
	var errs []error
	if c.Enabled && c.Path == "" {
		errs = append(errs, config.Invalid("path", "must not be empty when the sink is enabled"))
	}
	if c.Synchronous != "normal" && c.Synchronous != "full" {
		errs = append(errs, config.Invalid("synchronous", `must be "normal" or "full", got %q`, c.Synchronous))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the syslog sink's configuration.
func (c SyslogConfig) Validate() error {
	var errs []error
	if c.Address != "" {
		host, port, err := net.SplitHostPort(c.Address)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, config.Invalid("address", "must be host:port, got %q", c.Address))
		}
	}
	if c.Network != "udp" && c.Network != "tcp" {
		errs = append(errs, config.Invalid("network", `must be "udp" or "tcp", got %q`, c.Network))
	}
	if _, ok := facilities[c.Facility]; !ok {
		errs = append(errs, config.Invalid("facility", "must be a syslog facility (user, daemon, local0 to local7, ...), got %q", c.Facility))
	}
	if !printASCII(c.AppName, 48) {
		errs = append(errs, config.Invalid("app_name", "must be 1 to 48 printable ASCII characters without spaces, got %q", c.AppName))
	}
	return errors.Join(errs...)
}

// facilities are the RFC 5424 facility codes by their usual names.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
	"lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// printASCII reports whether s is 1 to max characters of PRINTUSASCII
// (RFC 5424: %d33-126).
func printASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}
