package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFormat is returned by ParseTIFF and ParseWAV for data that is not a
// file of the format they read (wrong magic bytes, broken structure).
var ErrFormat = errors.New("ingest: bad format")

// Limits of the TIFF reader. A fax is a few pages; a file claiming more is
// refused rather than walked.
const (
	// MaxTIFFPages bounds the IFD chain (one IFD a page).
	MaxTIFFPages = 1000
	// MaxTIFFTags bounds the entries of one IFD (a baseline fax page
	// uses about 20).
	MaxTIFFTags = 1000
)

// TIFF describes a TIFF file.
type TIFF struct {
	// BigEndian: "MM" byte order (Motorola); false for "II" (Intel).
	BigEndian bool
	// Pages is the number of images (IFDs) in the main chain.
	Pages int
}

// tiffHeaderBytes is the size of the TIFF header: byte order, 42, offset
// of the first IFD (TIFF 6.0 section 2, "Image File Header").
const tiffHeaderBytes = 8

// ParseTIFF checks that data is a TIFF file, "II*\0" or "MM\0*" followed by
// a chain of image file directories that lie within the data, and counts
// its pages. It reads only the directories, never the image data.
func ParseTIFF(data []byte) (TIFF, error) {
	if len(data) < tiffHeaderBytes {
		return TIFF{}, fmt.Errorf("%w: %d bytes is too short for a TIFF file", ErrFormat, len(data))
	}
	var t TIFF
	var bo binary.ByteOrder
	switch string(data[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo, t.BigEndian = binary.BigEndian, true
	case "II+\x00", "MM\x00+":
		return TIFF{}, fmt.Errorf("%w: BigTIFF is not supported for faxes", ErrFormat)
	default:
		return TIFF{}, fmt.Errorf("%w: no TIFF magic (II*\\0 or MM\\0*) but %q", ErrFormat, data[:4])
	}
	// IFD: a 2-byte entry count, 12 bytes per entry, then the 4-byte
	// offset of the next IFD (0 ends the chain). TIFF 6.0 section 2.
	seen := map[uint32]bool{}
	off := bo.Uint32(data[4:8])
	for off != 0 {
		if t.Pages == MaxTIFFPages {
			return TIFF{}, fmt.Errorf("%w: more than %d pages", ErrFormat, MaxTIFFPages)
		}
		if off < tiffHeaderBytes || uint64(off)+2 > uint64(len(data)) {
			return TIFF{}, fmt.Errorf("%w: directory of page %d at offset %d outside the %d-byte file", ErrFormat, t.Pages+1, off, len(data))
		}
		if seen[off] {
			return TIFF{}, fmt.Errorf("%w: directory chain loops back to offset %d", ErrFormat, off)
		}
		seen[off] = true
		n := uint64(bo.Uint16(data[off:]))
		if n == 0 || n > MaxTIFFTags {
			return TIFF{}, fmt.Errorf("%w: directory of page %d has %d entries (1..%d)", ErrFormat, t.Pages+1, n, MaxTIFFTags)
		}
		next := uint64(off) + 2 + 12*n
		if next+4 > uint64(len(data)) {
			return TIFF{}, fmt.Errorf("%w: directory of page %d is cut short at byte %d", ErrFormat, t.Pages+1, len(data))
		}
		t.Pages++
		off = bo.Uint32(data[next:])
	}
	if t.Pages == 0 {
		return TIFF{}, fmt.Errorf("%w: no image directory", ErrFormat)
	}
	return t, nil
}
