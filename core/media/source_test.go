package media

import (
	"net/netip"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// TestSourceCheck: with a source check on the DTLS leg (the addresses
// that passed ICE), SRTP that authenticates but comes from another
// address is neither relayed nor latched; the checked address is, and
// the other leg's media goes back to it, not to the stranger.
func TestSourceCheck(t *testing.T) {
	e, alerts := newEngine(t, testConfig(100))
	d := newDTLSCall(t, e, true)
	stranger := newPhone(t, "127.0.0.1")
	if err := d.c.SetSourceCheck(core.RoleCallee, 0, func(netip.AddrPort) bool { return true }); !errIs(err, ErrCrypto) {
		t.Fatalf("source check on a plain leg: %v", err)
	}
	if err := d.c.SetSourceCheck(core.RoleCaller, 0, func(src netip.AddrPort) bool { return src == d.browser.addr }); err != nil {
		t.Fatal(err)
	}
	// The stranger has the keys (a browser spoofing another address):
	// its packet authenticates, and is still refused.
	pkt, _ := d.enc.EncryptRTP(nil, rtpPkt(t, 0, 7, 1, 0, []byte("spoofed")), nil)
	stranger.send(pkt, d.toGateway)
	alerts.wait(t, RuleSource)
	d.phone.silent()
	pkt, _ = d.enc.EncryptRTP(nil, rtpPkt(t, 0, 7, 2, 160, []byte("checked")), nil)
	d.browser.send(pkt, d.toGateway)
	if b, _ := d.phone.mustRecv(); string(payloadOf(t, b)) != "checked" {
		t.Fatalf("relayed %q", payloadOf(t, b))
	}
	d.phone.send(rtpPkt(t, 0, 9, 1, 0, []byte("back")), d.toPhone)
	if _, src := d.browser.mustRecv(); src != d.toGateway {
		t.Fatalf("the browser got the phone's media from %v", src)
	}
	stranger.silent()
}

// TestDTLSLegAlwaysLearnt: whatever the latch mode, nothing goes to the
// address a DTLS leg's description names before that leg has sent an
// authenticated packet from an address its source check admits (its
// description may name anyone); then media goes to that address.
func TestDTLSLegAlwaysLearnt(t *testing.T) {
	for _, mode := range []string{LatchStrict, LatchNAT, LatchAlways} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(100)
			cfg.Latch = mode
			e, _ := newEngine(t, cfg)
			d := newDTLSCall(t, e) // the description names d.browser.addr; not behind NAT
			checked := newPhone(t, "127.0.0.1")
			if err := d.c.SetSourceCheck(core.RoleCaller, 0, func(src netip.AddrPort) bool { return src == checked.addr }); err != nil {
				t.Fatal(err)
			}
			d.phone.send(rtpPkt(t, 0, 9, 1, 0, []byte("early")), d.toPhone)
			d.browser.silent()
			pkt, _ := d.enc.EncryptRTP(nil, rtpPkt(t, 0, 7, 1, 0, []byte("from the described address")), nil)
			d.browser.send(pkt, d.toGateway)
			d.phone.silent()
			pkt, _ = d.enc.EncryptRTP(nil, rtpPkt(t, 0, 7, 2, 160, []byte("checked")), nil)
			checked.send(pkt, d.toGateway)
			if b, _ := d.phone.mustRecv(); string(payloadOf(t, b)) != "checked" {
				t.Fatalf("relayed %q", payloadOf(t, b))
			}
			d.phone.send(rtpPkt(t, 0, 9, 2, 160, []byte("back")), d.toPhone)
			b, _ := checked.mustRecv()
			if plain, err := d.dec.DecryptRTP(nil, b, nil); err != nil || string(payloadOf(t, plain)) != "back" {
				t.Fatalf("the checked address got %x: %v", b, err)
			}
			d.browser.silent()
		})
	}
}
