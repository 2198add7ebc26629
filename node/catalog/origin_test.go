package catalog

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A pending entry carries its listener and boot id (version 2); an entry
// without them keeps the version 1 encoding, byte for byte, so records
// and final entries stay readable by older nodes.
func TestEncodeOriginRoundTrip(t *testing.T) {
	e := Entry{ID: "01a2.0", Mailbox: "alice@example.com", Size: 1, Locations: []string{"n1", "n2"}, State: Pending, Version: 5,
		Origin: "n1", Boot: 0xfeedface12345678}
	enc := e.Encode(nil)
	assert.Equal(t, byte(encodingVersionOrigin), enc[0])
	got, err := Decode(enc)
	require.NoError(t, err)
	assert.Equal(t, e, got)

	legacy := e
	legacy.Origin, legacy.Boot = "", 0
	enc = legacy.Encode(nil)
	assert.Equal(t, byte(encodingVersion), enc[0], "no origin: the old encoding")
	got, err = Decode(enc)
	require.NoError(t, err)
	assert.Equal(t, legacy, got)

	_, err = Decode(e.Encode(nil)[:len(e.Encode(nil))-1])
	assert.ErrorIs(t, err, ErrBadEncoding, "a truncated boot id")
}
