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
