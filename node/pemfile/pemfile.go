// Package pemfile reads the PEM files a node's configuration names (the
// serving certificate, the peer API's CA, certificate and key) with errors
// an operator can act on.
//
// The usual failure is a file the service user cannot read: the guide's
// commands run as root, the node as an unprivileged user, and a private
// key is written 0600. crypto/tls reports that as "open FILE: permission
// denied", which names neither the configuration key nor the user that
// was refused. Every error here starts with the configuration key and the
// file, and a refused read says which user the node runs as.
package pemfile

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
)

// Read returns the contents of file, named by the configuration key key
// (peer-ca, tls-cert, ...).
func Read(key, file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, describe(key, file, err, os.Geteuid())
	}
	return b, nil
}

// LoadKeyPair is tls.LoadX509KeyPair with errors that name the
// configuration keys of both files.
func LoadKeyPair(certKey, certFile, keyKey, keyFile string) (tls.Certificate, error) {
	certPEM, err := Read(certKey, certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := Read(keyKey, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s with %s %s: %w", certKey, certFile, keyKey, keyFile, err)
	}
	return cert, nil
}

// describe makes the error of reading file, named by key, for a process
// of effective user id uid.
func describe(key, file string, err error, uid int) error {
	// The path is in the message already; keep the cause alone.
	cause := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%s %s: %w: the node runs as %s, which cannot read it (docs/deploy.md: the service user needs read access to the file and search access to its directories)", key, file, cause, userName(uid))
	}
	return fmt.Errorf("%s %s: %w", key, file, cause)
}

// userName is "user NAME (uid N)", or "uid N" when the name is unknown.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("user %s (uid %s)", u.Username, id)
	}
	return "uid " + id
}
