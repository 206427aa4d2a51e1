package sip

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// Credentials a user computed for the gateway's realm never reach an
// upstream; credentials for the upstream's own realm (a PBX that
// authenticates its users behind the gateway) do.
func TestCredentialsStayOnTheirLeg(t *testing.T) {
	const (
		gatewayCreds = `Digest username="alice", realm="ucgate", nonce="n1", uri="sip:bob@gw", response="0123456789abcdef0123456789abcdef"`
		pbxCreds     = `Digest username="alice", realm="pbx.example", nonce="n2", uri="sip:bob@pbx", response="fedcba9876543210fedcba9876543210"`
		zoneCreds    = `Digest username="alice", realm="branch", nonce="n3", uri="sip:bob@gw", response="00112233445566778899aabbccddeeff"`
	)
	own := func(realm string) bool { return realm == "ucgate" || realm == "branch" }
	cases := []struct {
		name   string
		own    func(string) bool
		header string
		value  string
		cross  bool
	}{
		{"gateway realm, Proxy-Authorization", own, "Proxy-Authorization", gatewayCreds, false},
		{"gateway realm, Authorization", own, "Authorization", gatewayCreds, false},
		{"a zone's realm", own, "Proxy-Authorization", zoneCreds, false},
		{"upstream's realm", own, "Proxy-Authorization", pbxCreds, true},
		{"upstream's realm, Authorization", own, "Authorization", pbxCreds, true},
		{"no realm known: nothing crosses", nil, "Authorization", pbxCreds, false},
		{"unparsable", own, "Authorization", `Digest garbage`, false},
		{"no realm", own, "Authorization", `Digest username="alice", nonce="n", uri="sip:x", response="00"`, false},
		{"oversized", own, "Authorization", pbxCreds + `, x="` + string(make([]byte, 5000)) + `"`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &Adapter{ownRealm: tc.own}
			in := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1"})
			in.AppendHeader(sip.NewHeader("Subject", "hello"))
			in.AppendHeader(sip.NewHeader(tc.header, tc.value))
			out := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.2"})
			a.copyRequest(in, out)
			if out.GetHeader("Subject") == nil {
				t.Error("Subject did not cross")
			}
			got := out.GetHeader(tc.header)
			if crossed := got != nil; crossed != tc.cross {
				t.Fatalf("%s crossed = %v, want %v", tc.header, crossed, tc.cross)
			}
			if got != nil && got.Value() != tc.value {
				t.Errorf("crossed as %q", got.Value())
			}
		})
	}
}
