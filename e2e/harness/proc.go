package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProcConfig describes a process for [StartProc].
type ProcConfig struct {
	// Name labels the process in logs and names its log file; default: the
	// base name of Path.
	Name string
	// Path is the binary (a name is looked up in PATH).
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to the test's environment (KEY=value).
	Env []string
	// Dir is the working directory; default: a new temp dir of the test.
	Dir string
	// Grace is how long Stop waits after SIGTERM before SIGKILL; default 5 s.
	Grace time.Duration
}

// Proc is a process started by [StartProc]. Its stdout and stderr go to
// LogPath. It is stopped by its PID when the test ends; if the test failed,
// the tail of its log is written to the test log.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	grace   time.Duration
	done    chan struct{}

	mu       sync.Mutex
	exitCode int
	waitErr  error

	stopOnce sync.Once
}

// StartProc starts a process and registers its Stop with t.Cleanup. It
// fails the test if the process cannot be started.
func StartProc(t testing.TB, cfg ProcConfig) *Proc {
	t.Helper()
	p, err := startProc(t, cfg)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

func startProc(t testing.TB, cfg ProcConfig) (*Proc, error) {
	name := cfg.Name
	if name == "" {
		name = filepath.Base(cfg.Path)
	}
	dir := cfg.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	logFile, err := os.CreateTemp(t.TempDir(), sanitize(name)+"-*.log")
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Stdin stays nil: the child reads /dev/null. If the test binary dies,
	// the kernel kills the child (it is ours; nothing else is touched).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logFile, "# %s %s (dir %s)\n", cfg.Path, strings.Join(cfg.Args, " "), dir)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{
		name:     name,
		cmd:      cmd,
		logPath:  logFile.Name(),
		grace:    cfg.Grace,
		done:     make(chan struct{}),
		exitCode: -1,
	}
	if p.grace <= 0 {
		p.grace = 5 * time.Second
	}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.exitCode = cmd.ProcessState.ExitCode()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("harness: %s (pid %d, exit %d) log %s, tail:\n%s",
				p.name, p.Pid(), p.ExitCode(), p.logPath, p.Tail(40))
		}
	})
	return p, nil
}

// Name returns the label of the process.
func (p *Proc) Name() string { return p.name }

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath returns the file that receives the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Dir returns the working directory of the process.
func (p *Proc) Dir() string { return p.cmd.Dir }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode returns the exit code, or -1 while running or if a signal ended
// the process.
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// Wait waits for the process to exit and returns its exit code. If ctx ends
// first, it returns -1 and ctx's error; the process keeps running.
func (p *Proc) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.ExitCode(), nil
	case <-ctx.Done():
		return -1, fmt.Errorf("%s (pid %d) still running: %w", p.name, p.Pid(), ctx.Err())
	}
}

// Signal sends sig to the process (for example SIGHUP to reload).
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM to the process, waits up to the grace period, then
// sends SIGKILL, and waits for it to exit. It is safe to call more than once
// and after the process has exited. It only ever signals this process's PID.
func (p *Proc) Stop() {
	p.stopOnce.Do(func() {
		if p.Exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(p.grace):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	<-p.done
}

// Log returns the whole log of the process so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Tail returns the last n lines of the log. Carriage returns count as line
// ends (baresip ends its status lines with \r).
func (p *Proc) Tail(n int) string {
	lines := splitLines(p.Log())
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until a line of the log matches re and returns that line.
// It fails when ctx ends or when the process exits without such a line.
func (p *Proc) WaitLog(ctx context.Context, re *regexp.Regexp) (string, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		exited := p.Exited() // read the log after checking, so no line is missed
		b, _ := os.ReadFile(p.logPath)
		for _, l := range splitLines(string(b)) {
			if re.MatchString(l) {
				return l, nil
			}
		}
		if exited {
			return "", fmt.Errorf("%s (pid %d) exited with %d before logging %q", p.name, p.Pid(), p.ExitCode(), re)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s (pid %d) did not log %q: %w", p.name, p.Pid(), re, ctx.Err())
		case <-tick.C:
		}
	}
}

// splitLines splits on \n, \r\n and lone \r, dropping empty lines.
func splitLines(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	return f
}

// sanitize keeps a name usable in a file name.
func sanitize(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		if r == '/' || r == ' ' || r == ':' {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// errExited is returned by readiness waits when the process ended early.
var errExited = errors.New("harness: process exited")

// contextFor returns ctx bounded by d when ctx has no deadline of its own.
func contextFor(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
