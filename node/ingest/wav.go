package ingest

import (
	"encoding/binary"
	"fmt"
	"time"
)

// MaxWAVChunks bounds the RIFF chunks walked before the audio is found.
const MaxWAVChunks = 1000

// WAV describes a RIFF WAVE file.
type WAV struct {
	Format        uint16 // wFormatTag (1 PCM, 6 A-law, 7 mu-law, ...); the sub-format of WAVE_FORMAT_EXTENSIBLE
	Channels      int
	SampleRate    int // samples per second per channel
	BitsPerSample int
	ByteRate      int   // average bytes per second
	DataBytes     int64 // bytes of audio in the data chunk that are present
	// Duration is DataBytes / ByteRate.
	Duration time.Duration
}

// waveFormatExtensible is the format tag whose real format is the first
// two bytes of the sub-format GUID (Microsoft WAVEFORMATEXTENSIBLE).
const waveFormatExtensible = 0xFFFE

// formatNames names the format tags a voicemail system writes
// (RFC 2361 lists the registry).
var formatNames = map[uint16]string{
	0x0001: "PCM",
	0x0002: "MS ADPCM",
	0x0003: "IEEE float",
	0x0006: "A-law",
	0x0007: "mu-law",
	0x0011: "IMA ADPCM",
	0x0031: "GSM 6.10",
	0x0040: "G.721 ADPCM",
	0x0055: "MPEG layer 3",
	0x0064: "G.726 ADPCM",
}

// FormatName is the name of the audio encoding.
func (w WAV) FormatName() string {
	if s, ok := formatNames[w.Format]; ok {
		return s
	}
	return fmt.Sprintf("format 0x%04x", w.Format)
}

// Describe says what the audio is, for people: "8000 Hz, mono, 16-bit PCM".
func (w WAV) Describe() string {
	ch := fmt.Sprintf("%d channels", w.Channels)
	switch w.Channels {
	case 1:
		ch = "mono"
	case 2:
		ch = "stereo"
	}
	bits := ""
	if w.BitsPerSample > 0 {
		bits = fmt.Sprintf("%d-bit ", w.BitsPerSample)
	}
	return fmt.Sprintf("%d Hz, %s, %s%s", w.SampleRate, ch, bits, w.FormatName())
}

// ParseWAV checks that data is a RIFF WAVE file ("RIFF", size, "WAVE", then
// chunks) with a valid "fmt " chunk and a "data" chunk, and reads the
// audio's format and duration. A RIFF or data size left unset or too big
// by a streaming recorder (0, 0xFFFFFFFF) is taken as "to the end of the
// data", as players do.
func ParseWAV(data []byte) (WAV, error) {
	if len(data) < 12 {
		return WAV{}, fmt.Errorf("%w: %d bytes is too short for a WAV file", ErrFormat, len(data))
	}
	if string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return WAV{}, fmt.Errorf("%w: no WAV magic (RIFF....WAVE) but %q", ErrFormat, data[:12])
	}
	end := uint64(len(data))
	if riff := uint64(binary.LittleEndian.Uint32(data[4:8])) + 8; riff >= 12 && riff < end {
		end = riff // ignore bytes after the RIFF chunk
	}
	var w WAV
	haveFmt, haveData := false, false
	off := uint64(12)
	for chunks := 0; off+8 <= end && !(haveFmt && haveData); chunks++ {
		if chunks == MaxWAVChunks {
			return WAV{}, fmt.Errorf("%w: more than %d chunks before the audio", ErrFormat, MaxWAVChunks)
		}
		id := string(data[off : off+4])
		size := uint64(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		body := off + 8
		if body+size > end {
			if id != "data" {
				return WAV{}, fmt.Errorf("%w: chunk %q of %d bytes is cut short", ErrFormat, id, size)
			}
			size = end - body
		}
		switch id {
		case "fmt ":
			if err := w.readFmt(data[body : body+size]); err != nil {
				return WAV{}, err
			}
			haveFmt = true
		case "data":
			w.DataBytes = int64(size)
			haveData = true
		}
		off = body + size + size&1 // chunks are padded to an even length
	}
	if !haveFmt {
		return WAV{}, fmt.Errorf("%w: no fmt chunk", ErrFormat)
	}
	if !haveData {
		return WAV{}, fmt.Errorf("%w: no data chunk", ErrFormat)
	}
	w.Duration = time.Duration(float64(w.DataBytes) / float64(w.ByteRate) * float64(time.Second))
	return w, nil
}

// readFmt reads a "fmt " chunk (WAVEFORMATEX: tag, channels, rate, byte
// rate, block align, bits per sample; the extensible form adds a
// sub-format GUID at byte 24).
func (w *WAV) readFmt(b []byte) error {
	if len(b) < 16 {
		return fmt.Errorf("%w: fmt chunk of %d bytes (at least 16)", ErrFormat, len(b))
	}
	le := binary.LittleEndian
	w.Format = le.Uint16(b[0:])
	w.Channels = int(le.Uint16(b[2:]))
	w.SampleRate = int(le.Uint32(b[4:]))
	w.ByteRate = int(le.Uint32(b[8:]))
	w.BitsPerSample = int(le.Uint16(b[14:]))
	if w.Format == waveFormatExtensible && len(b) >= 26 {
		w.Format = le.Uint16(b[24:])
	}
	switch {
	case w.Format == 0:
		return fmt.Errorf("%w: fmt chunk has format tag 0", ErrFormat)
	case w.Channels < 1 || w.Channels > 64:
		return fmt.Errorf("%w: %d channels", ErrFormat, w.Channels)
	case w.SampleRate < 1 || w.SampleRate > 1_000_000:
		return fmt.Errorf("%w: sample rate %d Hz", ErrFormat, w.SampleRate)
	case w.ByteRate < 1:
		return fmt.Errorf("%w: byte rate %d", ErrFormat, w.ByteRate)
	}
	return nil
}
