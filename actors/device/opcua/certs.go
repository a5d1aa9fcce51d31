package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/iotgw/iotgw/config"
)

// Certificates. OPC UA's secure channel authenticates both ends by their application instance certificates,
// usually self-signed, and each end keeps a trust list of the other's (UaExpert asks "trust this server?", a PLC's
// web page lists rejected clients). gopcua v0.8.0 checks neither end's certificate against anything: it encrypts to
// the certificate the server's GetEndpoints answer names and takes the one its channel answer carries. So the
// gateway checks the server's certificate itself before it opens the channel: the certificate of the endpoint it
// selected must be one named in server_certificates (trusted as it is, like ssh's known_hosts), or be signed by
// the CA in server_ca, and be within its validity period. A certificate that does not verify is an error that names
// its subject and SHA-1 thumbprint (the identity OPC UA tools show), never trusted silently.
//
// What this does not cover: with security_mode Sign (no encryption) gopcua does not compare the certificate of the
// channel's answer with the one checked here, so a man in the middle that swaps it is not caught; with
// SignAndEncrypt the opening request is encrypted to the checked certificate's key, which only its owner can read.

// ErrUntrustedServer is the error of a server certificate that does not verify.
var ErrUntrustedServer = errors.New("server certificate not trusted")

// trust is what a device trusts: pinned certificates (DER) and a CA pool.
type trust struct {
	pins [][]byte
	ca   *x509.CertPool
}

// loadTrust reads a device's server_certificates and server_ca.
func loadTrust(cfg *config.OPCUADevice) (*trust, error) {
	t := &trust{}
	for _, p := range cfg.ServerCerts {
		ders, err := readCerts(p)
		if err != nil {
			return nil, fmt.Errorf("server_certificates: %w", err)
		}
		t.pins = append(t.pins, ders...)
	}
	if cfg.ServerCA != "" {
		ders, err := readCerts(cfg.ServerCA)
		if err != nil {
			return nil, fmt.Errorf("server_ca: %w", err)
		}
		t.ca = x509.NewCertPool()
		for _, der := range ders {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("server_ca %s: %w", cfg.ServerCA, err)
			}
			t.ca.AddCert(c)
		}
	}
	return t, nil
}

// readCerts reads the certificates of a file: PEM (one or more CERTIFICATE blocks) or one DER certificate.
func readCerts(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ders [][]byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	if len(ders) == 0 {
		if _, err := x509.ParseCertificate(data); err != nil {
			return nil, fmt.Errorf("%s holds no certificate (PEM or DER): %v", path, err)
		}
		ders = append(ders, data)
	}
	return ders, nil
}

// thumbprint is a certificate's SHA-1 thumbprint, as OPC UA tools show it.
func thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return hex.EncodeToString(sum[:])
}

// verify checks the server's certificate der against t at now.
func (t *trust) verify(der []byte, now time.Time) error {
	if len(der) == 0 {
		return fmt.Errorf("%w: the endpoint presents no certificate", ErrUntrustedServer)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: the endpoint's certificate cannot be parsed: %v", ErrUntrustedServer, err)
	}
	who := fmt.Sprintf("%q (thumbprint %s)", c.Subject.String(), thumbprint(der))
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%w: %s is valid from %s to %s, not now", ErrUntrustedServer, who,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, pin := range t.pins {
		if string(pin) == string(der) {
			return nil
		}
	}
	if t.ca != nil {
		_, err := c.Verify(x509.VerifyOptions{Roots: t.ca, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			return nil
		}
		return fmt.Errorf("%w: %s is not in server_certificates and does not verify against server_ca: %v", ErrUntrustedServer, who, err)
	}
	return fmt.Errorf("%w: %s is not one of server_certificates: if it is your server's, add its file there", ErrUntrustedServer, who)
}

// clientCert is the gateway's client certificate: DER, its key and the application URI it names.
type clientCert struct {
	der  []byte
	key  *rsa.PrivateKey
	uri  string
	file string // where it is kept, to tell an operator what to trust on the server
}

// genMu serialises the first start's generation of the gateway's certificate between devices starting together
// (they share one file pair); a process-wide lock, since the files are process-wide too.
var genMu sync.Mutex

// The generated certificate's files under data_dir.
const (
	certFile = "client_certificate.der"
	keyFile  = "client_key.pem"
)

// loadClientCert returns the device's client certificate: the files it names, or the gateway's own, generated into
// <data_dir>/opcua/ at the first start and reused after (so a server's trust list, once it trusts the gateway,
// keeps trusting it across restarts).
func loadClientCert(cfg *config.OPCUADevice, dataDir, gatewayID string) (*clientCert, error) {
	if cfg.Certificate != "" {
		ders, err := readCerts(cfg.Certificate)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		key, err := readKey(cfg.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("private_key: %w", err)
		}
		c, err := newClientCert(ders[0], key)
		if c != nil {
			c.file = cfg.Certificate
		}
		return c, err
	}
	if dataDir == "" {
		return nil, errors.New("no data_dir to keep the generated client certificate in: set gateway { data_dir } or give certificate and private_key")
	}
	dir := filepath.Join(dataDir, "opcua")
	genMu.Lock()
	defer genMu.Unlock()
	certPath, keyPath := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	if der, err := os.ReadFile(certPath); err == nil {
		key, err := readKey(keyPath)
		if err != nil {
			return nil, fmt.Errorf("generated client key: %w", err)
		}
		return kept(newClientCert(der, key))(certPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	der, key, err := generateCert(gatewayID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeAtomic(certPath, der, 0o644); err != nil {
		return nil, err
	}
	return kept(newClientCert(der, key))(certPath)
}

// kept records where a generated certificate is kept.
func kept(c *clientCert, err error) func(string) (*clientCert, error) {
	return func(path string) (*clientCert, error) {
		if c != nil {
			c.file = path
		}
		return c, err
	}
}

func newClientCert(der []byte, key *rsa.PrivateKey) (*clientCert, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.Cmp(key.N) != 0 {
		return nil, errors.New("the client certificate and private_key are not a pair (OPC UA needs an RSA key)")
	}
	cc := &clientCert{der: der, key: key}
	if len(c.URIs) > 0 {
		cc.uri = c.URIs[0].String()
	}
	return cc, nil
}

func readKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s is not a PEM key", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is a %T key: OPC UA's Basic256Sha256 needs RSA", path, k)
	}
	return rk, nil
}

// generateCert makes the gateway's self-signed application instance certificate (Part 6 6.2.2): RSA 2048,
// SHA-256, the application URI urn:iotgw:{gateway id} in its subjectAltName, usable for signing and key and data
// encipherment, client and server auth, valid for ten years.
func generateCert(gatewayID string) ([]byte, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	uri, err := url.Parse("urn:iotgw:" + url.PathEscape(gatewayID))
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "iotgw " + gatewayID, Organization: []string{"iotgw"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	if host != "" {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// writeAtomic writes a file through a temporary file and a rename, so a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
