package pipeline

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of the signature file.
const (
	// MaxSignatureLineBytes bounds one line of the file; a longer line is
	// reported and skipped.
	MaxSignatureLineBytes = 4096
	// MinPatternBytes is the shortest byte pattern: shorter ones match
	// ordinary mail, and the matcher indexes patterns by 4-byte prefix.
	MinPatternBytes = 4
	// MaxPatternBytes is the longest byte pattern.
	MaxPatternBytes = 1024
	// MaxSignatures bounds the signatures loaded from one file; the rest
	// are reported and skipped.
	MaxSignatures = 200_000
	// MaxSignatureNameBytes bounds a signature's name.
	MaxSignatureNameBytes = 128
	// maxFindings bounds the matches collected from one buffer: one is
	// enough to condemn it, a few name it.
	maxFindings = 16
	// smallPatternSet is the count under which each pattern is searched
	// with bytes.Index (vectorised) rather than through the prefix index.
	smallPatternSet = 8
)

// SignatureKind says how a signature matches.
type SignatureKind int

const (
	// SigBytes matches a byte pattern anywhere in a decoded part or in the
	// raw message.
	SigBytes SignatureKind = iota
	// SigSHA256 matches a decoded part whose SHA-256 digest is Digest.
	SigSHA256
)

// Signature is one entry of the signature database.
type Signature struct {
	Name    string
	Kind    SignatureKind
	Pattern []byte   // SigBytes
	Digest  [32]byte // SigSHA256
	Line    int      // line of the file, 0 for built-in signatures
}

// EICARName is the name of the built-in EICAR test signature.
const EICARName = "EICAR-Test-File"

// eicar is the EICAR anti-virus test file (https://www.eicar.org), which
// every scanner must detect; it is harmless.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// builtinSignatures are always loaded, whatever the file says.
func builtinSignatures() []Signature {
	return []Signature{{Name: EICARName, Kind: SigBytes, Pattern: []byte(eicar)}}
}

// Problem is a line of a file that was skipped, and why.
type Problem struct {
	File   string
	Line   int
	Reason string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason) }

// ParseSignatures reads a signature file. name is copied into each Problem.
// It is pure: it neither logs nor touches anything but r.
//
// The format, one signature a line:
//
//	name hex:<hex bytes>      a byte pattern, 4 to 1024 bytes
//	name sha256:<64 hex>      the SHA-256 of a whole decoded attachment
//
// Blank lines and lines starting with '#' are ignored; names are 1 to 128
// printable non-space characters and unique. A bad line is reported with
// its number and skipped. A read error ends the parse with a Problem.
func ParseSignatures(r io.Reader, name string) ([]Signature, []Problem) {
	var sigs []Signature
	var problems []Problem
	seen := map[string]int{}
	br := bufio.NewReaderSize(r, MaxSignatureLineBytes+2)
	lineNo := 0
	for {
		line, tooLong, err := readLine(br, MaxSignatureLineBytes)
		if err != nil && !errors.Is(err, io.EOF) {
			problems = append(problems, Problem{File: name, Line: lineNo + 1, Reason: "read error: " + err.Error()})
			return sigs, problems
		}
		if err != nil && len(line) == 0 && !tooLong {
			return sigs, problems
		}
		lineNo++
		bad := func(reason string) { problems = append(problems, Problem{File: name, Line: lineNo, Reason: reason}) }
		switch {
		case tooLong:
			bad(fmt.Sprintf("line longer than %d bytes", MaxSignatureLineBytes))
		default:
			s, reason, ok := parseSignature(line)
			switch {
			case reason != "":
				bad(reason)
			case !ok:
			case seen[s.Name] != 0:
				bad(fmt.Sprintf("duplicate name %s (first on line %d)", s.Name, seen[s.Name]))
			case len(sigs) >= MaxSignatures:
				bad(fmt.Sprintf("more than %d signatures", MaxSignatures))
			default:
				s.Line = lineNo
				seen[s.Name] = lineNo
				sigs = append(sigs, s)
			}
		}
		if err != nil {
			return sigs, problems
		}
	}
}

// parseSignature parses one line; ok is false for blank and comment lines.
func parseSignature(line string) (s Signature, reason string, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return s, "", false
	}
	fields := strings.Fields(line)
	if len(fields) != 2 {
		return s, "want: name hex:<bytes> or name sha256:<digest>", false
	}
	s.Name = fields[0]
	if len(s.Name) > MaxSignatureNameBytes {
		return s, fmt.Sprintf("name longer than %d bytes", MaxSignatureNameBytes), false
	}
	for i := 0; i < len(s.Name); i++ {
		if c := s.Name[i]; c < 0x21 || c > 0x7e {
			return s, "name with a non-printable character", false
		}
	}
	kind, value, found := strings.Cut(fields[1], ":")
	if !found {
		return s, "want hex: or sha256: before the value", false
	}
	b, err := hex.DecodeString(value)
	if err != nil {
		return s, "bad hex: " + err.Error(), false
	}
	switch strings.ToLower(kind) {
	case "hex":
		if len(b) < MinPatternBytes || len(b) > MaxPatternBytes {
			return s, fmt.Sprintf("pattern of %d bytes, want %d to %d", len(b), MinPatternBytes, MaxPatternBytes), false
		}
		s.Kind, s.Pattern = SigBytes, b
	case "sha256":
		if len(b) != sha256.Size {
			return s, fmt.Sprintf("digest of %d bytes, want %d", len(b), sha256.Size), false
		}
		s.Kind = SigSHA256
		copy(s.Digest[:], b)
	default:
		return s, fmt.Sprintf("unknown kind %q, want hex or sha256", printable(kind, 16)), false
	}
	return s, "", true
}

// readLine returns the next line without its line end. A line longer than
// max is consumed to its end and reported as tooLong without its bytes.
// err is io.EOF when the input ended on this line.
func readLine(br *bufio.Reader, max int) (line string, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			if len(buf) > max+2 {
				tooLong, buf = true, nil
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		if !tooLong && len(buf) > max {
			tooLong, buf = true, nil
		}
		return string(buf), tooLong, err
	}
}

// sigDB is a compiled, immutable set of signatures.
type sigDB struct {
	sigs     []Signature
	patterns []int                 // indexes of SigBytes signatures
	prefix   map[uint32][]int      // first 4 bytes of a pattern -> indexes
	first2   *[1 << 16 / 64]uint64 // bit set of patterns' first 2 bytes
	digests  map[[32]byte]int      // digest -> index
}

func compileSignatures(sigs []Signature) *sigDB {
	db := &sigDB{sigs: sigs, prefix: map[uint32][]int{}, first2: new([1 << 16 / 64]uint64), digests: map[[32]byte]int{}}
	for i, s := range sigs {
		switch s.Kind {
		case SigBytes:
			if len(s.Pattern) < MinPatternBytes {
				panic("pipeline: invariant: pattern shorter than MinPatternBytes reached the matcher")
			}
			db.patterns = append(db.patterns, i)
			k := binary.LittleEndian.Uint32(s.Pattern)
			db.prefix[k] = append(db.prefix[k], i)
			f := uint16(k)
			db.first2[f/64] |= 1 << (f % 64)
		case SigSHA256:
			if _, dup := db.digests[s.Digest]; !dup {
				db.digests[s.Digest] = i
			}
		}
	}
	return db
}

// finding is one match of a byte pattern.
type finding struct {
	Offset int
	Sig    *Signature
}

// find returns up to maxFindings matches of byte patterns in data, every
// occurrence (the raw scan attributes each to the part it lies in), in no
// particular order.
func (db *sigDB) find(data []byte) []finding {
	var out []finding
	if len(db.patterns) <= smallPatternSet {
		for _, i := range db.patterns {
			pat := db.sigs[i].Pattern
			for from := 0; from < len(data); {
				at := indexPattern(data[from:], pat)
				if at < 0 {
					break
				}
				out = append(out, finding{Offset: from + at, Sig: &db.sigs[i]})
				if len(out) >= maxFindings {
					return out
				}
				from += at + 1
			}
		}
		return out
	}
	for i := 0; i+MinPatternBytes <= len(data); i++ {
		f := uint16(data[i]) | uint16(data[i+1])<<8
		if db.first2[f/64]&(1<<(f%64)) == 0 {
			continue
		}
		for _, si := range db.prefix[binary.LittleEndian.Uint32(data[i:])] {
			if !bytes.HasPrefix(data[i:], db.sigs[si].Pattern) {
				continue
			}
			out = append(out, finding{Offset: i, Sig: &db.sigs[si]})
			if len(out) >= maxFindings {
				return out
			}
		}
	}
	return out
}

// vectorHead is the longest pattern head that bytes.Index compares with
// the CPU's vector instructions on every platform that has them
// (internal/bytealg.MaxLen: 31 or 63 on amd64, 32 on arm64).
const vectorHead = 31

// indexPattern is bytes.Index(data, pat), faster for a long pattern whose
// first byte is common in data. Past bytealg.MaxLen bytes.Index follows
// the first byte with IndexByte and, after too many false starts, hashes
// every byte (Rabin-Karp, ~2 ns a byte): EICAR starts with 'X', and mail
// of 'X' filler (Postfix's smtp-source sends nothing else) took ~8 µs a
// 4 KiB scan, two scans a message. Searching the pattern's first
// vectorHead bytes takes the vector path instead (~2 µs) and checks the
// rest at each hit; should the head keep matching where the pattern does
// not (data repeating it), the rest goes to bytes.Index after as many
// misses as bytes.Index itself tolerates, which bounds the work as it does.
func indexPattern(data, pat []byte) int {
	if len(pat) <= vectorHead {
		return bytes.Index(data, pat)
	}
	head := pat[:vectorHead]
	for from, misses := 0, 0; ; misses++ {
		at := bytes.Index(data[from:], head)
		if at < 0 {
			return -1
		}
		if bytes.HasPrefix(data[from+at:], pat) {
			return from + at
		}
		from += at + 1
		if misses > 4+from>>4 {
			if at := bytes.Index(data[from:], pat); at >= 0 {
				return from + at
			}
			return -1
		}
	}
}

// digest returns the signature whose digest is sum, or nil.
func (db *sigDB) digest(sum [32]byte) *Signature {
	if i, ok := db.digests[sum]; ok {
		return &db.sigs[i]
	}
	return nil
}
