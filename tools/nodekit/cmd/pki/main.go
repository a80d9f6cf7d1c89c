// Command pki writes the certificates a small Kubernetes cluster needs: a CA, and
// certificates signed by it (client, serving, or both), plus the service-account key pair.
//
//	pki ca   -dir D [-cn NAME]                       D/ca.crt, D/ca.key (kept if present)
//	pki cert -dir D -name N -cn CN [-o ORG]... [-ip IP]... [-dns NAME]... [-client] [-server]
//	pki sa   -dir D                                  D/sa.key, D/sa.pub (kept if present)
//
// -ca-cert/-ca-key sign with another CA (e.g. a kwokctl cluster's). Keys are ECDSA P-256
// (PKCS#8), certificates are valid for ten years; files are written 0600 (keys) / 0644.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

const validity = 10 * 365 * 24 * time.Hour

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: pki ca|cert|sa -dir DIR ..."))
	}
	var err error
	switch os.Args[1] {
	case "ca":
		err = runCA(os.Args[2:])
	case "cert":
		err = runCert(os.Args[2:])
	case "sa":
		err = runSA(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want ca, cert or sa)", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pki:", err)
	os.Exit(1)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
}

func write(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func runCA(args []string) error {
	fs := flag.NewFlagSet("ca", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory")
	cn := fs.String("cn", "gpu-conformance-ca", "common name")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("ca: -dir is required")
	}
	crtPath, keyPath := filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key")
	if exists(crtPath) && exists(keyPath) {
		return nil
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: *cn},
		NotBefore:             now,
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := write(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return write(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadCA(crtPath, keyPath string) (*x509.Certificate, any, error) {
	crtPEM, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(crtPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", crtPath)
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	var key any
	switch kb.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	return crt, key, err
}

func runCert(args []string) error {
	fs := flag.NewFlagSet("cert", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory (and the CA's, unless -ca-cert/-ca-key)")
	name := fs.String("name", "", "file name stem: NAME.crt, NAME.key")
	cn := fs.String("cn", "", "common name (the Kubernetes user)")
	caCert := fs.String("ca-cert", "", "CA certificate (default DIR/ca.crt)")
	caKey := fs.String("ca-key", "", "CA key (default DIR/ca.key)")
	client := fs.Bool("client", false, "client authentication")
	server := fs.Bool("server", false, "server authentication")
	var orgs, ips, dnsNames multi
	fs.Var(&orgs, "o", "organization (a Kubernetes group); repeatable")
	fs.Var(&ips, "ip", "IP SAN; repeatable")
	fs.Var(&dnsNames, "dns", "DNS SAN; repeatable")
	_ = fs.Parse(args)
	if *dir == "" || *name == "" || *cn == "" {
		return errors.New("cert: -dir, -name and -cn are required")
	}
	if !*client && !*server {
		return errors.New("cert: give -client, -server or both")
	}
	if *caCert == "" {
		*caCert = filepath.Join(*dir, "ca.crt")
	}
	if *caKey == "" {
		*caKey = filepath.Join(*dir, "ca.key")
	}
	ca, caPriv, err := loadCA(*caCert, *caKey)
	if err != nil {
		return err
	}
	if _, ok := caPriv.(crypto.Signer); !ok {
		return errors.New("cert: unsupported CA key type")
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	var usages []x509.ExtKeyUsage
	if *client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	if *server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	var parsedIPs []net.IP
	for _, ip := range ips {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return fmt.Errorf("cert: bad -ip %q", ip)
		}
		parsedIPs = append(parsedIPs, parsed)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	ski := sha256.Sum256(pub)
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: *cn, Organization: orgs},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usages,
		IPAddresses:  parsedIPs,
		DNSNames:     dnsNames,
		SubjectKeyId: ski[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caPriv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if err := write(filepath.Join(*dir, *name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return write(filepath.Join(*dir, *name+".crt"),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func runSA(args []string) error {
	fs := flag.NewFlagSet("sa", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("sa: -dir is required")
	}
	keyPath, pubPath := filepath.Join(*dir, "sa.key"), filepath.Join(*dir, "sa.pub")
	if exists(keyPath) && exists(pubPath) {
		return nil
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := write(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return write(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}
