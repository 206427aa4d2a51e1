package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCert is a self-signed certificate for 127.0.0.1, ::1 and localhost,
// written as PEM files. The certificate is its own CA: CertFile serves as
// the CA file of a verifying client.
type TestCert struct {
	// CertFile is the PEM certificate (also the CA file).
	CertFile string
	// KeyFile is the PEM private key (PKCS#8, ECDSA P-256).
	KeyFile string
	// Certificate is the pair, ready for tls.Config.Certificates.
	Certificate tls.Certificate
	// Pool holds the certificate, for tls.Config.RootCAs.
	Pool *x509.CertPool
	// SPKIPin is base64(sha256(SubjectPublicKeyInfo)), as Chromium's
	// --ignore-certificate-errors-spki-list wants it.
	SPKIPin string
}

// NewTestCert generates a self-signed certificate and key into a temp dir of
// the test, valid for a day, with subjectAltNames IP:127.0.0.1, IP:::1 and
// DNS:localhost (plus any extra DNS names). No openssl needed.
func NewTestCert(t testing.TB, dnsNames ...string) *TestCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("harness: serial: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"ucgate e2e"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              append([]string{"localhost"}, dnsNames...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("harness: create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("harness: marshal key: %v", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	tc := &TestCert{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(tc.CertFile, certPEM, 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := os.WriteFile(tc.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatalf("harness: %v", err)
	}
	tc.Certificate, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("harness: key pair: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("harness: parse certificate: %v", err)
	}
	tc.Pool = x509.NewCertPool()
	tc.Pool.AddCert(cert)
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	tc.SPKIPin = base64.StdEncoding.EncodeToString(sum[:])
	return tc
}
