package proxy

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSASLUser(t *testing.T) {
	for _, tc := range []struct {
		mech, data, want string
	}{
		{"PLAIN", b64("\x00alice\x00secret"), "alice"},
		{"PLAIN", b64("admin\x00alice\x00secret"), "alice"},
		{"PLAIN", b64("alice\x00secret"), ""},
		{"SCRAM-SHA-1", b64("n,,n=juliet,r=abc"), "juliet"},
		{"SCRAM-SHA-256", b64("y,,n=a=2Cb=3Dc,r=abc"), "a,b=c"},
		{"SCRAM-SHA-1-PLUS", b64("p=tls-exporter,a=x,n=romeo,r=abc"), "romeo"},
		{"SCRAM-SHA-1", b64("n,,r=abc"), ""},
		{"SCRAM-SHA-1", b64("n"), ""},
		{"PLAIN", "not base64!", ""},
		{"PLAIN", b64("\x00al\x01ice\x00secret"), ""},
		{"PLAIN", b64("\x00" + strings.Repeat("a", 200) + "\x00x"), ""},
		{"EXTERNAL", b64("alice"), ""},
		{"PLAIN", "=", ""},
	} {
		if got := saslUser(tc.mech, tc.data); got != tc.want {
			t.Errorf("saslUser(%s, %q) = %q, want %q", tc.mech, tc.data, got, tc.want)
		}
	}
}

func TestObservable(t *testing.T) {
	for mech, want := range map[string]bool{
		"PLAIN": true, "SCRAM-SHA-1": true, "SCRAM-SHA-256": true, "SCRAM-SHA-512": true, "ANONYMOUS": true,
		"SCRAM-SHA-1-PLUS": false, "EXTERNAL": false, "DIGEST-MD5": false, "X-OAUTH2": false, "OAUTHBEARER": false,
		"": false, "plain": false,
	} {
		if got := observable(mech); got != want {
			t.Errorf("observable(%q) = %v, want %v", mech, got, want)
		}
	}
}

func FuzzSASLUser(f *testing.F) {
	f.Add("PLAIN", b64("\x00alice\x00secret"))
	f.Add("SCRAM-SHA-1", b64("n,,n=juliet,r=abc"))
	f.Add("SCRAM-SHA-1-PLUS", b64("p=tls-exporter,,n=a=2C,r=x"))
	f.Fuzz(func(t *testing.T, mech, data string) {
		u := saslUser(mech, data)
		if len(u) > maxUser || cleanUser(u) != u {
			t.Fatalf("saslUser(%q, %q) = %q: not bounded and clean", mech, data, u)
		}
	})
}

func TestBucket(t *testing.T) {
	var b bucket
	b.init(10, 5) // 10/s, bursts of 5
	now := int64(1e12)
	for i := range 5 {
		if !b.take(now) {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	if b.take(now) {
		t.Fatal("a sixth token at once")
	}
	if !b.take(now + 100e6) {
		t.Fatal("no token 100 ms later at 10/s")
	}
	if b.take(now + 100e6) {
		t.Fatal("two tokens 100 ms later")
	}
}

// TestFeatures: the server's STARTTLS and -PLUS mechanisms are hidden,
// the proxy's STARTTLS offered on a plain client stream.
func TestFeatures(t *testing.T) {
	const hdr = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`
	feat := `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` +
		`<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism>` +
		`<mechanism>EXTERNAL</mechanism></mechanisms>` +
		`<authentication xmlns='urn:xmpp:sasl:2'><mechanism>PLAIN</mechanism></authentication></stream:features>`
	r := wire.NewReader(strings.NewReader(hdr+feat), wire.Limits{})
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	it, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []bool{true, false} {
		c := &conn{encrypted: enc}
		out := string(c.features(it.El, it.Raw))
		rr := wire.NewReader(strings.NewReader(hdr+out), wire.Limits{})
		rr.Next()
		it2, err := rr.Next()
		if err != nil {
			t.Fatalf("rewritten features %q: %v", out, err)
		}
		el := it2.El
		if got := el.Child(nsTLS, "starttls") != nil; got != !enc {
			t.Errorf("encrypted=%v: starttls offered %v in %s", enc, got, out)
		}
		m := el.Child(nsSASL, "mechanisms")
		if m == nil || len(m.Children) != 2 || strings.Contains(out, "PLUS") || strings.Contains(out, "DIGEST") || strings.Contains(out, "EXTERNAL") {
			t.Errorf("encrypted=%v: mechanisms in %s", enc, out)
		}
		if el.Child(nsSASL2, "authentication") != nil {
			t.Errorf("encrypted=%v: SASL2 offered in %s", enc, out)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Defaults()
	good.Enabled = true
	good.Listeners = []Listener{{Listen: "127.0.0.1:5222", Mode: "starttls", Zone: "internet"}}
	good.Domains = []string{"example.test"}
	good.Upstream.Address = "127.0.0.1:15222"
	if err := good.Validate(); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no listeners", func(c *Config) { c.Listeners = nil }, "listeners: must name"},
		{"mode", func(c *Config) { c.Listeners = []Listener{{Listen: "127.0.0.1:1", Mode: "tls", Zone: "z"}} }, "listeners[0].mode"},
		{"domain", func(c *Config) { c.Domains = []string{"a@b"} }, "domains[0]"},
		{"upstream tls", func(c *Config) { c.Upstream.TLS = "yes" }, "upstream.tls"},
		{"stanza", func(c *Config) { c.Limits.MaxStanza = 10 }, "limits.max_stanza"},
		{"block", func(c *Config) { c.Block = []string{"xmpp/nope"} }, "block[0]"},
		{"cert alone", func(c *Config) { c.TLS.Cert = "x" }, "tls: cert and key"},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzFeatures feeds arbitrary server features through the rewriting.
// Invariants: no panic; the result reads back as one element; it never
// offers a mechanism the proxy cannot observe (-PLUS, EXTERNAL, ...),
// and offers STARTTLS exactly when the client stream is not encrypted.
func FuzzFeatures(f *testing.F) {
	f.Add(`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>`, true)
	f.Add(`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><x:y xmlns:x='urn:x' x:a='&amp;'>t</x:y></stream:features>`, false)
	const hdr = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`
	f.Fuzz(func(t *testing.T, feat string, enc bool) {
		r := wire.NewReader(strings.NewReader(hdr+feat), wire.Limits{MaxSize: 8192})
		if _, err := r.Next(); err != nil {
			return
		}
		it, err := r.Next()
		if err != nil || it.Kind != wire.KindElement || !it.El.Is(wire.NSStream, "features") {
			return
		}
		c := &conn{encrypted: enc}
		out := c.features(it.El, it.Raw)
		rr := wire.NewReader(strings.NewReader(hdr+string(out)), wire.Limits{MaxSize: 1 << 20})
		rr.Next()
		it2, err := rr.Next()
		if err != nil || it2.Kind != wire.KindElement {
			t.Fatalf("%q rewritten as %q does not read back: %v", feat, out, err)
		}
		if got := it2.El.Child(nsTLS, "starttls") != nil; got != !enc {
			t.Fatalf("encrypted=%v: starttls %v in %q", enc, got, out)
		}
		if m := it2.El.Child(nsSASL, "mechanisms"); m != nil {
			for _, x := range m.Children {
				if !observable(strings.TrimSpace(x.Text)) {
					t.Fatalf("mechanism %q offered in %q", x.Text, out)
				}
			}
		}
	})
}
