package ddnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's ACME test server (Debian package pebble, RFC
// 8555) run on 127.0.0.1 with an HTTPS certificate of its own test CA.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// APIRoots trusts pebble's HTTPS certificate; APIRootPEM is the same
	// root in PEM.
	APIRoots   *x509.CertPool
	APIRootPEM []byte
	mgmt       string
	client     *http.Client
	logs       *lockedBuffer
}

// FreeTCPPort returns a 127.0.0.1 port number that was free just now.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartPebble starts pebble, stopped when the test ends. It validates
// HTTP-01 on httpPort and resolves names (DNS-01 TXT, HTTP-01 A/AAAA) at
// dnsServer ("127.0.0.1:PORT", e.g. a Knot's Addr). Validation runs without
// pebble's random delays, nonces are never rejected and authorizations are
// never reused, so every order runs its challenges.
func StartPebble(t testing.TB, httpPort int, dnsServer string) *Pebble {
	t.Helper()
	bin := Require(t, "pebble")
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := pebbleAPICert(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	listen := "127.0.0.1:" + strconv.Itoa(FreeTCPPort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(FreeTCPPort(t))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                httpPort,
		"tlsPort":                 FreeTCPPort(t), // TLS-ALPN-01 is not offered by Hearth
		"ocspResponderURL":        "",
	}}
	b, _ := json.Marshal(conf)
	confPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Pebble{
		Directory:  "https://" + listen + "/dir",
		APIRoots:   pool,
		APIRootPEM: caPEM,
		mgmt:       mgmt,
		client:     &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		logs:       &lockedBuffer{},
	}
	cmd := exec.Command(bin, "-config", confPath, "-dnsserver", dnsServer)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("pebble logs:\n%s", p.logs.String())
		}
	})
	for i := 0; ; i++ {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("pebble exited:\n%s", p.logs.String())
		default:
		}
		if i == 200 {
			t.Fatalf("pebble does not answer at %s: %v\n%s", p.Directory, err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// IssuerRoots returns pebble's issuing root (a new one per run), to verify
// the certificates it issued.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %q", b)
	}
	return pool
}

// pebbleAPICert makes a CA and a certificate for 127.0.0.1 / localhost
// signed by it, for pebble's HTTPS API.
func pebbleAPICert(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Hearth test API CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
