package webrtc

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v4"
)

// BenchmarkDTLSHandshake: one connectivity check and one DTLS handshake
// (ECDSA P-256, extended master secret, SRTP key export) per iteration
// between a pion/dtls client and the gateway's transport, on loopback,
// one after the other. Reported as handshakes per second.
func BenchmarkDTLSHandshake(b *testing.B) {
	gwCert, err := newCertificate()
	if err != nil {
		b.Fatal(err)
	}
	peerCert, err := newCertificate()
	if err != nil {
		b.Fatal(err)
	}
	loc := local{ufrag: "gwuf", pwd: "gatewaypasswordgatewaypw", fingerprint: gwCert.fingerprint}
	alg, value, _ := strings.Cut(peerCert.fingerprint, " ")
	rem := streamParams{ufrag: "peer", pwd: "peerpasswordpeerpassword", setup: "actpass",
		fingerprints: []certFP{{alg, value}}}
	b.ResetTimer()
	for range b.N {
		if err := benchHandshake(loc, rem, gwCert, peerCert); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func benchHandshake(loc local, rem streamParams, gwCert, peerCert *certificate) error {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tr := newTransport(srv, loc, rem, gwCert, 5*time.Second)
	defer tr.close()
	go tr.readLoop()
	cli, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer cli.Close()
	// The connectivity check the browser sends first.
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(loc.ufrag+":"+rem.ufrag),
		stun.NewShortTermIntegrity(loc.pwd), stun.Fingerprint)
	if err != nil {
		return err
	}
	if _, err := cli.WriteTo(req.Raw, srv.LocalAddr()); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := cli.ReadFrom(buf); err != nil {
		return err
	}
	_ = cli.SetReadDeadline(time.Time{})
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		_, _, err := tr.handshake(context.Background())
		done <- result{err}
	}()
	dc, err := dtls.ClientWithOptions(cli, srv.LocalAddr(),
		dtls.WithCertificates(peerCert.tls),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithInsecureSkipVerify(true))
	if err != nil {
		return err
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		return err
	}
	return (<-done).err
}
