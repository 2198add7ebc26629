package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Errors of the spam database editing functions.
var (
	// ErrListed is returned by AddDomain when the domain is already in
	// the file.
	ErrListed = errors.New("pipeline: domain already listed")
	// ErrNotListed is returned by DelDomain when the domain is not in the
	// file.
	ErrNotListed = errors.New("pipeline: domain not listed")
)

// AddDomain appends domain to the spam database file, creating it if
// needed. The file is replaced atomically (a temporary file in the same
// directory, synced, then renamed over it), so a filter reloading it never
// sees half a file; a lock file (file + ".lock") serialises concurrent
// editors, in this process or others (`mailarray spam add` while another
// runs). The rest of the file, comments included, is kept byte for byte.
func AddDomain(file, domain string) error {
	d, err := CanonicalDomain(domain)
	if err != nil {
		return err
	}
	return editDomains(file, func(content []byte) ([]byte, error) {
		domains, _ := ParseDomains(bytes.NewReader(content), file)
		for _, have := range domains {
			if have == d {
				return nil, fmt.Errorf("%w: %s", ErrListed, d)
			}
		}
		if len(content) > 0 && content[len(content)-1] != '\n' {
			content = append(content, '\n')
		}
		return append(content, d+"\n"...), nil
	})
}

// DelDomain removes every line listing domain from the file, atomically and
// under the lock, as AddDomain does. Other lines are kept byte for byte.
func DelDomain(file, domain string) error {
	d, err := CanonicalDomain(domain)
	if err != nil {
		return err
	}
	return editDomains(file, func(content []byte) ([]byte, error) {
		var out []byte
		removed := false
		for line := range bytes.Lines(content) {
			if got, ok, _ := parseDomainLine(string(line)); ok && got == d {
				removed = true
				continue
			}
			out = append(out, line...)
		}
		if !removed {
			return nil, fmt.Errorf("%w: %s", ErrNotListed, d)
		}
		return out, nil
	})
}

// ListDomains returns the domains of the file in file order, lower case;
// bad lines are skipped (ParseDomains reports them). A missing file lists
// nothing.
func ListDomains(file string) ([]string, error) {
	b, _, err := readListFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: list domains: %w", err)
	}
	domains, _ := ParseDomains(bytes.NewReader(b), file)
	return domains, nil
}

// editDomains runs edit on the file's content under the lock and writes
// what it returns atomically.
func editDomains(file string, edit func([]byte) ([]byte, error)) (err error) {
	unlock, err := lockFile(file + ".lock")
	if err != nil {
		return fmt.Errorf("pipeline: lock %s: %w", file, err)
	}
	defer unlock()
	content, _, err := readListFile(file)
	mode := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		content = nil
	case err != nil:
		return fmt.Errorf("pipeline: read %s: %w", file, err)
	default:
		if fi, err := os.Stat(file); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	out, err := edit(content)
	if err != nil {
		return err
	}
	return writeAtomic(file, out, mode)
}

// writeAtomic writes b to a temporary file beside path, syncs it, renames
// it over path and syncs the directory, so that path holds either the old
// or the new content, whole, even across a crash.
func writeAtomic(path string, b []byte, mode fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+strings.TrimPrefix(base, ".")+".tmp*")
	if err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pipeline: write %s: %w", path, err)
	}
	tmp = nil
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; not all systems allow it
		d.Close()
	}
	return nil
}
