// Package ingesttest makes small, well-formed fax (TIFF) and voicemail
// (WAV) documents for tests of the ingest gateway, as httptest does for
// HTTP.
package ingesttest

import (
	"bytes"
	"encoding/binary"
)

// TIFF returns a fax of pages pages: a baseline bilevel TIFF whose every
// page is a 1728-pixel-wide CCITT Group 3 image with strip, the strip's
// bytes being strip (any bytes: the reader never decodes them). bigEndian
// picks "MM" over "II".
func TIFF(pages int, bigEndian bool, strip []byte) []byte {
	var bo binary.ByteOrder = binary.LittleEndian
	var b bytes.Buffer
	if bigEndian {
		bo = binary.BigEndian
		b.WriteString("MM\x00*")
	} else {
		b.WriteString("II*\x00")
	}
	u16 := func(v uint16) { binary.Write(&b, bo, v) }
	u32 := func(v uint32) { binary.Write(&b, bo, v) }
	u32(8) // the first IFD follows the header
	type tag struct {
		id, typ uint16
		value   uint32
	}
	const short, long = 3, 4
	for p := 0; p < pages; p++ {
		ifd := uint32(b.Len())
		tags := []tag{
			{256, short, 1728},              // ImageWidth
			{257, long, 1143},               // ImageLength
			{258, short, 1},                 // BitsPerSample
			{259, short, 3},                 // Compression: CCITT T.4
			{262, short, 0},                 // PhotometricInterpretation: white is zero
			{273, long, 0},                  // StripOffsets, set below
			{277, short, 1},                 // SamplesPerPixel
			{278, long, 1143},               // RowsPerStrip
			{279, long, uint32(len(strip))}, // StripByteCounts
		}
		stripAt := ifd + 2 + uint32(len(tags))*12 + 4
		u16(uint16(len(tags)))
		for _, t := range tags {
			if t.id == 273 {
				t.value = stripAt
			}
			u16(t.id)
			u16(t.typ)
			u32(1)
			if t.typ == short {
				u16(uint16(t.value))
				u16(0)
			} else {
				u32(t.value)
			}
		}
		next := uint32(0)
		if p < pages-1 {
			next = stripAt + uint32(len(strip)) + uint32(len(strip)&1)
		}
		u32(next)
		b.Write(strip)
		if len(strip)&1 == 1 {
			b.WriteByte(0) // IFDs start on a word boundary
		}
	}
	return b.Bytes()
}

// WAV returns a PCM voice message of samples samples at rate Hz, mono,
// 16 bits, whose audio bytes begin with audio (then silence), with a LIST
// chunk before the data as recorders write.
func WAV(rate, samples int, audio []byte) []byte {
	data := make([]byte, samples*2)
	copy(data, audio)
	var b bytes.Buffer
	le := binary.LittleEndian
	chunk := func(id string, body []byte) {
		b.WriteString(id)
		binary.Write(&b, le, uint32(len(body)))
		b.Write(body)
		if len(body)&1 == 1 {
			b.WriteByte(0)
		}
	}
	var fmtc bytes.Buffer
	for _, v := range []any{uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		binary.Write(&fmtc, le, v)
	}
	b.WriteString("RIFF")
	b.Write([]byte{0, 0, 0, 0}) // size, set below
	b.WriteString("WAVE")
	chunk("fmt ", fmtc.Bytes())
	chunk("LIST", []byte("INFOISFT\x05\x00\x00\x00test\x00\x00"))
	chunk("data", data)
	out := b.Bytes()
	le.PutUint32(out[4:], uint32(len(out)-8))
	return out
}
