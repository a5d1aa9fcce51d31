// Package testca makes throwaway certificates for tests: a CA and certificates it signs, written as PEM files
// into a test's temporary directory. It is for tests only and must never be used to secure anything real.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority whose files live in Dir.
type CA struct {
	Dir    string
	CAFile string // the CA certificate, PEM

	t    testing.TB
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

// Pair is a certificate and its key, as files.
type Pair struct{ Cert, Key string }

// New makes a CA named name in a temporary directory of t.
func New(t testing.TB, name string) *CA {
	t.Helper()
	ca := &CA{Dir: t.TempDir(), t: t, n: 1}
	key := ca.newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.key = key
	ca.CAFile = ca.write(name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost (and any more hosts).
func (ca *CA) Server(name string, hosts ...string) Pair {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, append([]string{"127.0.0.1", "::1", "localhost"}, hosts...))
}

// Client issues a client certificate.
func (ca *CA) Client(name string) Pair { return ca.issue(name, x509.ExtKeyUsageClientAuth, nil) }

func (ca *CA) issue(name string, usage x509.ExtKeyUsage, hosts []string) Pair {
	ca.t.Helper()
	ca.n++
	key := ca.newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatalf("testca: %v", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatalf("testca: %v", err)
	}
	return Pair{Cert: ca.write(name+"-cert.pem", "CERTIFICATE", der), Key: ca.write(name+"-key.pem", "EC PRIVATE KEY", kder)}
}

func (ca *CA) newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatalf("testca: %v", err)
	}
	return key
}

func (ca *CA) write(name, typ string, der []byte) string {
	path := filepath.Join(ca.Dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatalf("testca: %v", err)
	}
	return path
}
