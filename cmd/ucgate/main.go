// Command ucgate is the security gateway for real-time communications.
//
//	ucgate run [-c FILE]       start the gateway (embedded default without -c)
//	ucgate check -c FILE       validate a configuration, every error with its line
//	ucgate cdr [filters]       list call detail records from the journal
//	ucgate users add|remove|list          users for digest authentication
//	ucgate blacklist list|add|remove      the running gateway's blacklist
//	ucgate defaults            print the embedded default configuration
//	ucgate plugins             the running gateway's plugins and their state
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/journal"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "cdr":
		err = cmdCDR(args[1:], stdout)
	case "users":
		err = cmdUsers(args[1:], stdout)
	case "blacklist":
		err = cmdBlacklist(args[1:], stdout)
	case "plugins":
		err = cmdPlugins(args[1:], stdout)
	case "defaults":
		_, err = stdout.Write(defaultYAML)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "ucgate: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			return 2
		}
		fmt.Fprintln(stderr, "ucgate:", strings.ReplaceAll(err.Error(), "\n", "\nucgate: "))
		return 1
	}
	return 0
}

type usageError struct{ error }

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: ucgate <command> [flags]

commands:
  run [-c FILE]      start the gateway; without -c it uses the embedded default
                     (loopback listeners, journal in ./data, demo echo upstream)
  check -c FILE      validate a configuration file; every error with its line
  cdr [flags]        list call detail records from the journal database
  users add|remove|list   manage the users digest authentication knows
  blacklist list|add|remove   inspect and change the running gateway's blacklist
  defaults           print the embedded default configuration
  plugins [-json]    the running gateway's plugins: kind, contract version, state
`)
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ucgate "+name, flag.ContinueOnError)
	return fs
}

func cmdCheck(args []string, out io.Writer) error {
	fs := newFlags("check")
	file := fs.String("c", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *file == "" {
		return fmt.Errorf("check needs -c FILE")
	}
	if _, err := loadConfig(*file); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: ok\n", *file)
	return nil
}

func cmdCDR(args []string, out io.Writer) error {
	fs := newFlags("cdr")
	file := fs.String("c", "", "configuration file (to find the journal database)")
	db := fs.String("db", "", "journal database (default: from the configuration)")
	since := fs.String("since", "", "only calls started at or after (RFC 3339, or a duration ago such as 2h)")
	until := fs.String("until", "", "only calls started before (RFC 3339, or a duration ago)")
	party := fs.String("party", "", "only calls whose from or to contains this")
	session := fs.String("session", "", "only this session id")
	reason := fs.String("reason", "", "only calls that ended for this reason (normal, canceled, rejected, ...)")
	by := fs.String("by", "", "only calls ended by caller, callee or gateway")
	answered := fs.String("answered", "", "yes: only answered calls; no: only unanswered")
	limit := fs.Int("n", journal.DefaultLimit, "most rows to show, newest first")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	path := *db
	if path == "" {
		cfg, err := loadConfig(*file)
		if err != nil {
			return err
		}
		path = cfg.Journal.SQLite.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(cfg.DataDir, path)
		}
	}
	f := journal.CDRFilter{Party: *party, Session: *session, EndReason: *reason, EndedBy: *by, Limit: *limit}
	var err error
	if f.Since, err = parseWhen(*since); err != nil {
		return fmt.Errorf("-since: %w", err)
	}
	if f.Until, err = parseWhen(*until); err != nil {
		return fmt.Errorf("-until: %w", err)
	}
	switch *answered {
	case "":
	case "yes", "true":
		t := true
		f.Answered = &t
	case "no", "false":
		t := false
		f.Answered = &t
	default:
		return fmt.Errorf("-answered: want yes or no, got %q", *answered)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cdrs, err := journal.QueryCDRs(ctx, path, f)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONLines(out, cdrs)
	}
	return journal.WriteCDRTable(out, cdrs)
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
