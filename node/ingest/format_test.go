package ingest

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/ingest/ingesttest"
)

func TestParseTIFF(t *testing.T) {
	loop := ingesttest.TIFF(2, false, []byte("abcd"))
	// The second page's next-IFD offset points back at the first.
	last := len(loop) - 4 - 4
	binary.LittleEndian.PutUint32(loop[last:], 8)
	outside := ingesttest.TIFF(1, true, nil)
	binary.BigEndian.PutUint32(outside[4:], 1<<20)
	empty := ingesttest.TIFF(1, false, nil)
	binary.LittleEndian.PutUint16(empty[8:], 0)

	tests := []struct {
		name    string
		data    []byte
		pages   int
		big     bool
		wantErr string
	}{
		{"one page II", ingesttest.TIFF(1, false, []byte("strip")), 1, false, ""},
		{"three pages MM", ingesttest.TIFF(3, true, []byte("xy")), 3, true, ""},
		{"PNG", []byte("\x89PNG\r\n\x1a\n0000000000000000"), 0, false, "no TIFF magic"},
		{"short", []byte("II*\x00"), 0, false, "too short"},
		{"BigTIFF", []byte("II+\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0, false, "BigTIFF"},
		{"IFD outside the file", outside, 0, false, "outside"},
		{"empty IFD", empty, 0, false, "has 0 entries"},
		{"cut short", ingesttest.TIFF(2, false, nil)[:40], 0, false, "cut short"},
		{"loop", loop, 0, false, "loops"},
	}
	for _, tc := range tests {
		got, err := ParseTIFF(tc.data)
		if tc.wantErr != "" {
			require.ErrorIs(t, err, ErrFormat, tc.name)
			assert.Contains(t, err.Error(), tc.wantErr, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.pages, got.Pages, "%s: pages", tc.name)
		assert.Equal(t, tc.big, got.BigEndian, "%s: byte order", tc.name)
	}
}

func TestParseWAV(t *testing.T) {
	ok := ingesttest.WAV(8000, 8000*3, nil) // 3 s at 8 kHz
	streamed := append([]byte(nil), ok...)
	binary.LittleEndian.PutUint32(streamed[4:], 0xFFFFFFFF)
	dataAt := len(streamed) - 8000*3*2 - 8
	binary.LittleEndian.PutUint32(streamed[dataAt+4:], 0xFFFFFFFF)
	noData := ok[:dataAt]
	noFmt := append([]byte("RIFF\x00\x00\x00\x00WAVE"), ok[dataAt:]...)
	zeroRate := append([]byte(nil), ok...)
	binary.LittleEndian.PutUint32(zeroRate[12+8+4:], 0)
	extensible := append([]byte(nil), ok...)
	binary.LittleEndian.PutUint16(extensible[12+8:], 0xFFFE)

	tests := []struct {
		name     string
		data     []byte
		duration time.Duration
		format   string
		wantErr  string
	}{
		{"PCM", ok, 3 * time.Second, "8000 Hz, mono, 16-bit PCM", ""},
		{"streamed sizes", streamed, 3 * time.Second, "8000 Hz, mono, 16-bit PCM", ""},
		{"extensible without sub-format", extensible, 3 * time.Second, "8000 Hz, mono, 16-bit format 0xfffe", ""},
		{"TIFF", ingesttest.TIFF(1, false, nil), 0, "", "no WAV magic"},
		{"AVI", []byte("RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00"), 0, "", "no WAV magic"},
		{"short", []byte("RIFF"), 0, "", "too short"},
		{"no data", noData, 0, "", "no data chunk"},
		{"no fmt", noFmt, 0, "", "no fmt chunk"},
		{"zero rate", zeroRate, 0, "", "sample rate 0"},
		{"fmt cut short", ok[:12+8+10], 0, "", "cut short"},
	}
	for _, tc := range tests {
		got, err := ParseWAV(tc.data)
		if tc.wantErr != "" {
			require.ErrorIs(t, err, ErrFormat, tc.name)
			assert.Contains(t, err.Error(), tc.wantErr, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.duration, got.Duration, "%s: duration", tc.name)
		assert.Equal(t, tc.format, got.Describe(), "%s: format", tc.name)
	}
}

// FuzzParseTIFF and FuzzParseWAV: the parsers read untrusted uploads; they
// must never panic, and what they accept must be self-consistent.
func FuzzParseTIFF(f *testing.F) {
	f.Add(ingesttest.TIFF(2, false, []byte("s")))
	f.Add(ingesttest.TIFF(1, true, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := ParseTIFF(data)
		if err == nil && (tf.Pages < 1 || tf.Pages > MaxTIFFPages) {
			t.Fatalf("accepted with %d pages", tf.Pages)
		}
	})
}

func FuzzParseWAV(f *testing.F) {
	f.Add(ingesttest.WAV(8000, 100, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ParseWAV(data)
		if err == nil && (w.DataBytes < 0 || w.DataBytes > int64(len(data)) || w.Duration < 0) {
			t.Fatalf("accepted with data %d of %d bytes, duration %v", w.DataBytes, len(data), w.Duration)
		}
	})
}
