package pemfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A refused read names the configuration key, the file and the user the
// node runs as, and still matches fs.ErrPermission. (Built from the error
// crypto/tls saw: a test running as root is never refused a read.)
func TestDescribePermissionNamesKeyFileAndUser(t *testing.T) {
	err := describe("peer-cert-key", "/etc/mailarray/tls/n1-key.pem",
		&fs.PathError{Op: "open", Path: "/etc/mailarray/tls/n1-key.pem", Err: syscall.EACCES}, 4242)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.Equal(t, "peer-cert-key /etc/mailarray/tls/n1-key.pem: permission denied: the node runs as uid 4242, which cannot read it"+
		" (docs/deploy.md: the service user needs read access to the file and search access to its directories)", err.Error())

	require.Contains(t, describe("tls-key", "k.pem", syscall.EACCES, 0).Error(), "runs as user root (uid 0)")
}

func TestLoadKeyPairNamesTheKeyAtFault(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	require.NoError(t, os.WriteFile(cert, []byte("not pem"), 0o644))

	_, err := LoadKeyPair("tls-cert", filepath.Join(dir, "missing.pem"), "tls-key", cert)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Equal(t, "tls-cert "+filepath.Join(dir, "missing.pem")+": no such file or directory", err.Error())

	_, err = LoadKeyPair("tls-cert", cert, "tls-key", filepath.Join(dir, "nokey.pem"))
	require.EqualError(t, err, "tls-key "+filepath.Join(dir, "nokey.pem")+": no such file or directory")

	_, err = LoadKeyPair("tls-cert", cert, "tls-key", cert)
	require.ErrorContains(t, err, "tls-cert "+cert+" with tls-key "+cert+": tls: failed to find any PEM data")
}
