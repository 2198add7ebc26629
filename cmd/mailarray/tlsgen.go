package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

// tlsCmd: `mailarray tls ca --out DIR` makes the array's CA for the peer
// API; `mailarray tls cert --ca DIR --name n1 [--ip 192.0.2.11] --out DIR`
// makes a node's peer certificate signed by it.
func tlsCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: mailarray tls ca --out DIR | mailarray tls cert --ca DIR --name NODE [--ip IP] --out DIR")
	}
	verb := args[0]
	fs := flag.NewFlagSet("tls "+verb, flag.ContinueOnError)
	out := fs.String("out", ".", "directory to write the files to")
	caDir := fs.String("ca", ".", "directory holding ca.pem and ca-key.pem")
	name := fs.String("name", "", "node name (certificate common name)")
	ips := fs.String("ip", "", "comma-separated IP addresses to include")
	days := fs.Int("days", 825, "validity in days")
	force := fs.Bool("force", false, "tls ca: replace an existing CA (every node certificate it signed stops being trusted)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if verb == "ca" && !*force {
		// A new CA key orphans every node certificate the old one signed:
		// the array's peers stop trusting each other at their next
		// handshake. Never do that by accident.
		for _, f := range []string{"ca-key.pem", "ca.pem"} {
			if _, err := os.Stat(filepath.Join(*out, f)); err == nil {
				return fmt.Errorf("tls ca: %s exists; refusing to replace the array's CA (pass --force to replace it and re-issue every node certificate)", filepath.Join(*out, f))
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, *days)}
	switch verb {
	case "ca":
		tmpl.Subject = pkix.Name{CommonName: "mailarray array CA"}
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return err
		}
		return writePair(*out, "ca", der, key)
	case "cert":
		if *name == "" {
			return errors.New("tls cert: --name is required")
		}
		ca, err := tls.LoadX509KeyPair(filepath.Join(*caDir, "ca.pem"), filepath.Join(*caDir, "ca-key.pem"))
		if err != nil {
			return fmt.Errorf("tls cert: %w", err)
		}
		caCert, err := x509.ParseCertificate(ca.Certificate[0])
		if err != nil {
			return err
		}
		tmpl.Subject = pkix.Name{CommonName: *name}
		tmpl.DNSNames = []string{*name}
		for _, s := range strings.Split(*ips, ",") {
			if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
		if err != nil {
			return err
		}
		return writePair(*out, *name, der, key)
	}
	return fmt.Errorf("tls: unknown verb %q (ca, cert)", verb)
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	cert := filepath.Join(dir, name+".pem")
	keyFile := filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", cert, keyFile)
	return nil
}
