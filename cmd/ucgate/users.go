package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/state"
	"github.com/ucgate/ucgate/policies/auth"
)

// usersUsage is the help of `ucgate users`.
const usersUsage = `usage:
  ucgate users add [-c FILE] [-realm REALM] [-password-stdin] NAME
      store NAME's digest hashes (MD5 and SHA-256) for REALM (default ` + auth.DefaultRealm + `);
      the password is read from the terminal without echo, or the first line
      of standard input; with -password-stdin, all of standard input
  ucgate users remove [-c FILE] NAME
  ucgate users list [-c FILE]
      name, realm and algorithms of every user (never the hashes)

The state database is data_dir/state.db of the configuration (-c FILE, or
the embedded default).
`

// maxPassword bounds the password read.
const maxPassword = 1024

// cmdUsers is `ucgate users add|remove|list`: the users the auth stage
// finds in the state database. Passwords are read from standard input,
// never from the command line, and are neither printed nor logged.
func cmdUsers(args []string, stdout io.Writer) error {
	return runUsers(args, os.Stdin, stdout)
}

func runUsers(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("users needs a command: add, remove or list (see ucgate users help)")
	}
	fs := newFlags("users " + args[0])
	file := fs.String("c", "", "configuration file, for data_dir (default: the embedded default)")
	var realm *string
	var fromStdin *bool
	switch args[0] {
	case "add":
		realm = fs.String("realm", auth.DefaultRealm, "digest realm the hashes are made for (the auth stage's realm)")
		fromStdin = fs.Bool("password-stdin", false, "read the password from all of standard input")
	case "remove", "list":
	case "help", "-h", "--help":
		_, err := io.WriteString(stdout, usersUsage)
		return err
	default:
		return fmt.Errorf("users: unknown command %q: want add, remove or list (see ucgate users help)", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	want := 1
	if args[0] == "list" {
		want = 0
	}
	if fs.NArg() != want {
		return fmt.Errorf("users %s: want %d name argument(s), got %d (see ucgate users help)", args[0], want, fs.NArg())
	}
	name := fs.Arg(0)
	if want == 1 {
		if err := auth.CheckUser(name); err != nil {
			return fmt.Errorf("users %s: name %w", args[0], err)
		}
	}
	if realm != nil {
		if err := auth.CheckRealm(*realm); err != nil {
			return fmt.Errorf("users add: -realm %w", err)
		}
	}

	cfg, err := loadConfig(*file)
	if err != nil {
		return err
	}
	// Read the password before opening the database, so that a wrong
	// password prompt leaves nothing half done.
	var password string
	if args[0] == "add" {
		if password, err = readPassword(stdin, *fromStdin, name, *realm); err != nil {
			return err
		}
	}
	st, err := state.Open("state.db", cfg.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	switch args[0] {
	case "add":
		_, err := st.GetUser(ctx, name)
		existed := err == nil
		u := core.User{Name: name, Realm: *realm, HA1: map[string]string{
			"MD5":     auth.HA1("MD5", name, *realm, password),
			"SHA-256": auth.HA1("SHA-256", name, *realm, password),
		}}
		if err := st.PutUser(ctx, u); err != nil {
			return err
		}
		verb := "added"
		if existed {
			verb = "replaced"
		}
		fmt.Fprintf(stdout, "user %s %s (realm %s, MD5 and SHA-256)\n", name, verb, *realm)
	case "remove":
		if err := st.DeleteUser(ctx, name); errors.Is(err, core.ErrNotFound) {
			return fmt.Errorf("users remove: no user %q", name)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s removed\n", name)
	case "list":
		users, err := st.Users(ctx)
		if err != nil {
			return err
		}
		return writeUsers(stdout, users)
	}
	return nil
}

// writeUsers prints name, realm, algorithms and state, never a hash.
func writeUsers(w io.Writer, users []core.User) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREALM\tALGORITHMS\tSTATE")
	for _, u := range users {
		algs := make([]string, 0, len(u.HA1))
		for a := range u.HA1 {
			algs = append(algs, a)
		}
		slices.Sort(algs)
		status := "enabled"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Realm, strings.Join(algs, ","), status)
	}
	return tw.Flush()
}

// readPassword reads the password: from a terminal, twice and without
// echo; from anything else, the first line (all of it with all=true).
func readPassword(stdin io.Reader, all bool, name, realm string) (string, error) {
	if f, ok := stdin.(*os.File); ok && !all && isTerminal(f) {
		return promptPassword(f, name, realm)
	}
	r := bufio.NewReader(io.LimitReader(stdin, maxPassword+2))
	var pw string
	var err error
	if all {
		var b []byte
		b, err = io.ReadAll(r)
		pw = string(b)
	} else {
		pw, err = r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw = strings.TrimSuffix(strings.TrimSuffix(pw, "\n"), "\r")
	return pw, checkPassword(pw)
}

func checkPassword(pw string) error {
	switch {
	case pw == "":
		return errors.New("read password: empty (give it on standard input)")
	case len(pw) > maxPassword:
		return fmt.Errorf("read password: longer than %d bytes", maxPassword)
	case strings.ContainsAny(pw, "\r\n"):
		return errors.New("read password: more than one line")
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// promptPassword asks on the terminal with echo turned off (stty, so that
// no terminal library is needed), twice.
func promptPassword(tty *os.File, name, realm string) (string, error) {
	stty := func(arg string) error {
		cmd := exec.Command("stty", arg)
		cmd.Stdin = tty
		return cmd.Run()
	}
	if err := stty("-echo"); err != nil {
		return "", fmt.Errorf("cannot turn off echo (%v): pipe the password in, or use -password-stdin", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sig)
		close(done)
		_ = stty("echo")
	}()
	go func() { // interrupted at the prompt: give the terminal its echo back
		select {
		case <-sig:
			_ = stty("echo")
			fmt.Fprintln(os.Stderr)
			os.Exit(130)
		case <-done:
		}
	}()
	r := bufio.NewReader(io.LimitReader(tty, 2*(maxPassword+2)))
	ask := func(prompt string) (string, error) {
		fmt.Fprint(os.Stderr, prompt)
		line, err := r.ReadString('\n')
		fmt.Fprintln(os.Stderr)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		return line, checkPassword(line)
	}
	pw, err := ask(fmt.Sprintf("Password for %s in realm %s: ", name, realm))
	if err != nil {
		return "", err
	}
	again, err := ask("Again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("read password: the two passwords differ")
	}
	return pw, nil
}
