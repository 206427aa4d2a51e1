package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/policies/admission"
	"github.com/ucgate/ucgate/policies/blacklist"
	"github.com/ucgate/ucgate/policies/bruteforce"
)

// stage finds the stage of type S in the current pipeline.
func stage[S core.Stage](gw *gateway) (S, bool) {
	gw.mu.Lock()
	p := gw.pipe
	gw.mu.Unlock()
	var zero S
	if p == nil {
		return zero, false
	}
	for _, s := range p.Stages() {
		if v, ok := s.(S); ok {
			return v, true
		}
	}
	return zero, false
}

// adminRoutes adds the admin API of the controls to mux: the blacklist
// (list, add, remove), brute-force lockouts, and admission counts. Each
// call finds the stage of the pipeline in force, so a reload is followed.
func (gw *gateway) adminRoutes(mux *http.ServeMux) {
	bl := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := stage[*blacklist.Stage](gw)
		if !ok {
			http.Error(w, "the blacklist is turned off", http.StatusNotFound)
			return
		}
		s.Handler().ServeHTTP(w, r)
	})
	mux.Handle("/blacklist", bl)
	mux.Handle("/blacklist/", bl)
	mux.HandleFunc("GET /lockouts", func(w http.ResponseWriter, _ *http.Request) {
		s, ok := stage[*bruteforce.Stage](gw)
		if !ok {
			writeJSON(w, []bruteforce.Lockout{})
			return
		}
		writeJSON(w, s.Lockouts())
	})
	mux.HandleFunc("DELETE /lockouts/{key...}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := stage[*bruteforce.Stage](gw)
		if !ok {
			http.Error(w, "brute-force protection is turned off", http.StatusNotFound)
			return
		}
		if err := s.Unlock(r.PathValue("key")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admission", func(w http.ResponseWriter, _ *http.Request) {
		s, ok := stage[*admission.Stage](gw)
		if !ok {
			http.Error(w, "admission control is turned off", http.StatusNotFound)
			return
		}
		writeJSON(w, s.Snapshot())
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// cmdBlacklist is `ucgate blacklist list|add|remove`: it talks to the
// running gateway's admin API, so the change takes effect at once and is
// persisted by the gateway.
func cmdBlacklist(args []string, out io.Writer) error {
	fs := newFlags("blacklist")
	file := fs.String("c", "", "configuration file (to find the admin listener)")
	admin := fs.String("admin", "", "admin listener host:port (default: from the configuration)")
	dur := fs.Duration("d", time.Hour, "with add: how long the block lasts")
	reason := fs.String("reason", "", "with add: why (shown in the list and the journal)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ucgate blacklist [-c FILE | -admin HOST:PORT] list | add [-d 1h] [-reason R] ADDR|CIDR | remove ADDR|CIDR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	rest := fs.Args()
	// Flags may follow the verb: "add -d 2h 192.0.2.7".
	if len(rest) > 1 {
		if err := fs.Parse(rest[1:]); err != nil {
			return usageError{err}
		}
		rest = append([]string{rest[0]}, fs.Args()...)
	}
	if len(rest) == 0 {
		fs.Usage()
		return usageError{flag.ErrHelp}
	}
	base, err := adminBase(*file, *admin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch rest[0] {
	case "list":
		var blocks []core.Block
		if err := call(ctx, http.MethodGet, base+"/blacklist", nil, &blocks); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tUNTIL\tRULE\tOFFENCES\tREASON")
		for _, b := range blocks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Key, b.Until.Local().Format(time.DateTime), b.Rule, b.Offences, b.Reason)
		}
		return tw.Flush()
	case "add":
		if len(rest) != 2 {
			return fmt.Errorf("blacklist add needs one address or CIDR prefix")
		}
		body, _ := json.Marshal(map[string]string{"key": rest[1], "duration": dur.String(), "reason": *reason})
		if err := call(ctx, http.MethodPost, base+"/blacklist", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s blocked for %s\n", rest[1], *dur)
		return nil
	case "remove":
		if len(rest) != 2 {
			return fmt.Errorf("blacklist remove needs one address or CIDR prefix")
		}
		if err := call(ctx, http.MethodDelete, base+"/blacklist/"+url.PathEscape(rest[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s unblocked\n", rest[1])
		return nil
	}
	return fmt.Errorf("blacklist: unknown verb %q (list, add, remove)", rest[0])
}

// adminBase is the admin API's base URL.
func adminBase(file, admin string) (string, error) {
	if admin == "" {
		cfg, err := loadConfig(file)
		if err != nil {
			return "", err
		}
		admin = cfg.Admin.Listen
	}
	if admin == "" {
		return "", errors.New("the admin listener is turned off (admin.listen)")
	}
	return "http://" + admin, nil
}

// call does one admin API request and decodes a JSON answer into out.
func call(ctx context.Context, method, u string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w (is the gateway running?)", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode >= 300 {
		return fmt.Errorf("admin API: %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
