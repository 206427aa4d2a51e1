package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BaresipConfig describes a headless baresip (PEERS.md 2.2).
type BaresipConfig struct {
	// Name labels the process; default "baresip".
	Name string
	// IP is the address baresip binds and advertises: "127.0.0.1"
	// (default) or "::1".
	IP string
	// Account is the line for the accounts file, e.g.
	//	<sip:1001@127.0.0.1:5060;transport=udp>;auth_pass=1234;answermode=auto;regint=60
	// Without a registrar use regint=0 and call it directly at SIPAddr.
	Account string
	// Modules are extra modules to load ("srtp.so"), after g711, ausine
	// and aubridge.
	Modules []string
	// Lines are extra config lines, appended verbatim.
	Lines []string
	// Timeout is baresip's -t: it quits by itself after this long;
	// default 60 s.
	Timeout time.Duration
	// WaitRegistered makes StartBaresip wait for a "200 OK ... [N binding]"
	// line (successful registration) after "baresip is ready.".
	WaitRegistered bool
	// StartTimeout bounds the wait for readiness; default 15 s.
	StartTimeout time.Duration
	// Contacts is the contacts file (address book), one contact a line,
	// e.g. `"Juliet" <sip:juliet@example.test>;presence=p2p`; the first is
	// the current contact (the "message" command's recipient). Default
	// empty.
	Contacts string
	// Args are extra command line options, e.g. "-s" (SIP trace into the
	// log).
	Args []string
}

// Baresip is a running baresip with a ctrl_tcp connection.
type Baresip struct {
	// Proc is the baresip process.
	Proc *Proc
	// Dir is the config directory (config, accounts, contacts).
	Dir string
	// SIPPort is sip_listen's port (UDP and TCP; TLS on SIPPort+1).
	SIPPort int
	// SIPAddr is sip_listen, host:port.
	SIPAddr string
	// CtrlAddr is ctrl_tcp_listen, host:port.
	CtrlAddr string
	// RTPPorts is the first and last port of rtp_ports.
	RTPPorts [2]int

	conn    net.Conn
	wmu     sync.Mutex
	events  chan BaresipEvent
	pmu     sync.Mutex
	pending map[string]chan BaresipResponse
	seq     int
	readErr error
	closed  chan struct{}
}

// BaresipEvent is an event pushed by ctrl_tcp, e.g.
// Type "CALL_ESTABLISHED", Class "call".
type BaresipEvent struct {
	Type       string `json:"type"`
	Class      string `json:"class"`
	AccountAOR string `json:"accountaor"`
	Direction  string `json:"direction"`
	PeerURI    string `json:"peeruri"`
	ID         string `json:"id"`
	Param      string `json:"param"`
	// Raw is the whole JSON object.
	Raw json.RawMessage `json:"-"`
}

// BaresipResponse answers a ctrl_tcp command.
type BaresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

var (
	baresipReady      = regexp.MustCompile(`baresip is ready\.`)
	baresipRegistered = regexp.MustCompile(`\} 200 OK .*\[[0-9]+ bindings?\]`)
)

// StartBaresip writes a config dir, starts baresip -f DIR -t N, waits for
// "baresip is ready." (and the registration, if asked), and connects to its
// ctrl_tcp port. Stop it with Quit or let the test's cleanup stop the PID.
func StartBaresip(t testing.TB, cfg BaresipConfig) *Baresip {
	t.Helper()
	RequirePeer(t, "baresip")
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.Name == "" {
		cfg.Name = "baresip"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 15 * time.Second
	}
	if cfg.Account == "" {
		t.Fatalf("harness: BaresipConfig.Account is empty")
	}
	v6 := strings.Contains(cfg.IP, ":")
	sfx := ""
	if v6 {
		sfx = "6"
	}
	// sip_listen binds UDP and TCP on the port, and TLS (TCP) on port+1.
	sipPort, err := reservePorts(2, func(p int) bool {
		return portFree([]string{"udp" + sfx, "tcp" + sfx}, p) && portFree([]string{"tcp" + sfx}, p+1)
	})
	if err != nil {
		t.Fatalf("harness: baresip ports: %v", err)
	}
	rtp, err := reservePorts(20, func(p int) bool {
		for i := range 20 {
			if !portFree([]string{"udp" + sfx}, p+i) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("harness: baresip rtp ports: %v", err)
	}
	ctrlPort := FreeTCPPort(t)

	b := &Baresip{
		Dir:      t.TempDir(),
		SIPPort:  sipPort,
		SIPAddr:  HostPort(cfg.IP, sipPort),
		CtrlAddr: HostPort("127.0.0.1", ctrlPort),
		RTPPorts: [2]int{rtp, rtp + 19},
		events:   make(chan BaresipEvent, 1024),
		pending:  map[string]chan BaresipResponse{},
		closed:   make(chan struct{}),
	}
	var c strings.Builder
	for _, kv := range [][2]string{
		{"poll_method", "epoll"},
		{"sip_listen", b.SIPAddr},
		{"call_local_timeout", "120"},
		{"call_max_calls", "4"},
		{"audio_player", "aubridge,nil"},
		{"audio_source", "ausine,440"},
		{"audio_alert", "aubridge,nil"},
		{"ausrc_srate", "48000"},
		{"ausrc_channels", "2"},
		{"auplay_srate", "48000"},
		{"auplay_channels", "2"},
		{"audio_level", "no"},
		{"rtp_ports", fmt.Sprintf("%d-%d", b.RTPPorts[0], b.RTPPorts[1])},
		{"rtp_timeout", "0"},
		{"net_interface", cfg.IP},
		{"module_path", "/usr/lib/baresip/modules"},
		{"module", "g711.so"},
		{"module", "ausine.so"},
		{"module", "aubridge.so"},
	} {
		fmt.Fprintf(&c, "%s\t\t%s\n", kv[0], kv[1])
	}
	for _, m := range cfg.Modules {
		fmt.Fprintf(&c, "module\t\t%s\n", m)
	}
	c.WriteString("module_tmp\t\tuuid.so\nmodule_tmp\t\taccount.so\n")
	c.WriteString("module_app\t\tcontact.so\nmodule_app\t\tmenu.so\nmodule_app\t\tctrl_tcp.so\n")
	fmt.Fprintf(&c, "ctrl_tcp_listen\t\t%s\n", b.CtrlAddr)
	for _, l := range cfg.Lines {
		c.WriteString(l + "\n")
	}
	for name, body := range map[string]string{
		"config":   c.String(),
		"accounts": cfg.Account + "\n",
		"contacts": cfg.Contacts,
	} {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatalf("harness: baresip config: %v", err)
		}
	}

	b.Proc = StartProc(t, ProcConfig{
		Name:  cfg.Name,
		Path:  "baresip",
		Args:  append([]string{"-f", b.Dir, "-t", strconv.Itoa(int((cfg.Timeout + time.Second - 1) / time.Second))}, cfg.Args...),
		Env:   []string{"HOME=" + b.Dir},
		Dir:   b.Dir,
		Grace: 3 * time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	if _, err := b.Proc.WaitLog(ctx, baresipReady); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if cfg.WaitRegistered {
		if _, err := b.Proc.WaitLog(ctx, baresipRegistered); err != nil {
			t.Fatalf("harness: baresip registration: %v", err)
		}
	}
	if err := b.dialCtrl(ctx); err != nil {
		t.Fatalf("harness: baresip ctrl_tcp: %v", err)
	}
	t.Cleanup(func() { b.conn.Close() })
	return b
}

// WaitRegistered waits for a successful registration line in the log.
func (b *Baresip) WaitRegistered(ctx context.Context) error {
	_, err := b.Proc.WaitLog(ctx, baresipRegistered)
	return err
}

func (b *Baresip) dialCtrl(ctx context.Context) error {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", b.CtrlAddr)
		if err == nil {
			b.conn = conn
			go b.readLoop()
			return nil
		}
		if b.Proc.Exited() {
			return fmt.Errorf("%w: baresip exited with %d", errExited, b.Proc.ExitCode())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect %s: %w", b.CtrlAddr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readLoop reads netstring frames: responses go to their waiting command,
// events to the events channel.
func (b *Baresip) readLoop() {
	defer close(b.closed)
	defer close(b.events)
	r := bufio.NewReader(b.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			b.pmu.Lock()
			b.readErr = err
			b.pmu.Unlock()
			return
		}
		var head struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg, &head) != nil {
			continue
		}
		switch {
		case head.Response:
			var resp BaresipResponse
			_ = json.Unmarshal(msg, &resp)
			b.pmu.Lock()
			ch := b.pending[resp.Token]
			delete(b.pending, resp.Token)
			b.pmu.Unlock()
			if ch != nil {
				ch <- resp
			}
		case head.Event:
			var ev BaresipEvent
			_ = json.Unmarshal(msg, &ev)
			ev.Raw = append(json.RawMessage(nil), msg...)
			select {
			case b.events <- ev:
			default: // nobody reads: drop
			}
		}
	}
}

// readNetstring reads one "<len>:<data>," frame.
func readNetstring(r *bufio.Reader) ([]byte, error) {
	ls, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(ls[:len(ls)-1]))
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("bad netstring length %q", ls)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring without trailing comma")
	}
	return buf[:n], nil
}

// Command sends a ctrl_tcp command ("dial", "hangup", "accept", "reginfo",
// "quit", ...) and waits for its response.
func (b *Baresip) Command(ctx context.Context, command, params string) (BaresipResponse, error) {
	b.pmu.Lock()
	b.seq++
	token := "h" + strconv.Itoa(b.seq)
	ch := make(chan BaresipResponse, 1)
	b.pending[token] = ch
	b.pmu.Unlock()
	body, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": token})
	frame := strconv.Itoa(len(body)) + ":" + string(body) + ","
	b.wmu.Lock()
	_, err := io.WriteString(b.conn, frame)
	b.wmu.Unlock()
	if err != nil {
		return BaresipResponse{}, fmt.Errorf("baresip %s: %w", command, err)
	}
	select {
	case resp := <-ch:
		if !resp.OK {
			return resp, fmt.Errorf("baresip %s %q: not ok: %s", command, params, resp.Data)
		}
		return resp, nil
	case <-b.closed:
		return BaresipResponse{}, fmt.Errorf("baresip %s: connection closed: %v", command, b.readErr)
	case <-ctx.Done():
		return BaresipResponse{}, fmt.Errorf("baresip %s: %w", command, ctx.Err())
	}
}

// Dial places a call to uri. The call inherits the account's transport
// unless uri says ";transport=udp" (PEERS.md 2.5).
func (b *Baresip) Dial(ctx context.Context, uri string) error {
	_, err := b.Command(ctx, "dial", uri)
	return err
}

// Hangup ends the current call.
func (b *Baresip) Hangup(ctx context.Context) error {
	_, err := b.Command(ctx, "hangup", "")
	return err
}

// Accept answers the incoming call (answermode=manual).
func (b *Baresip) Accept(ctx context.Context) error {
	_, err := b.Command(ctx, "accept", "")
	return err
}

// Quit asks baresip to unregister and exit, and waits for the process to
// end (bounded by ctx).
func (b *Baresip) Quit(ctx context.Context) error {
	if _, err := b.Command(ctx, "quit", ""); err != nil && !b.Proc.Exited() {
		return err
	}
	_, err := b.Proc.Wait(ctx)
	return err
}

// Events returns the channel of ctrl_tcp events since the connection was
// made (registration events come before it: PEERS.md 2.6). It is closed
// when the connection ends. Events are dropped if nobody reads 1024 of them.
func (b *Baresip) Events() <-chan BaresipEvent { return b.events }

// WaitEvent reads events until one of type typ arrives and returns it;
// events read on the way are discarded.
func (b *Baresip) WaitEvent(ctx context.Context, typ string) (BaresipEvent, error) {
	var seen []string
	for {
		select {
		case ev, ok := <-b.events:
			if !ok {
				return BaresipEvent{}, fmt.Errorf("baresip: events closed before %s (seen %v)", typ, seen)
			}
			if ev.Type == typ {
				return ev, nil
			}
			seen = append(seen, ev.Type)
		case <-ctx.Done():
			return BaresipEvent{}, fmt.Errorf("baresip: no %s event (seen %v): %w", typ, seen, ctx.Err())
		}
	}
}
