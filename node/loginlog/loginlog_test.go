package loginlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecordFields: every protocol's login line carries the same fields,
// remote as a string.
func TestRecordFields(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	var got []Event
	Record(log, func(ev Event) { got = append(got, ev) },
		Event{Protocol: "imap", Remote: "192.0.2.1:5000", Mailbox: "a@example.com", Result: Failure, Reason: "invalid credentials"})
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.Equal(t, "login", line["msg"])
	assert.Equal(t, "WARN", line["level"])
	assert.Equal(t, "imap", line["protocol"])
	assert.Equal(t, "failure", line["result"])
	assert.Equal(t, "a@example.com", line["mailbox"])
	assert.Equal(t, "192.0.2.1:5000", line["remote"], "remote is a string")
	assert.Equal(t, "invalid credentials", line["reason"])
	require.Len(t, got, 1)
	assert.Equal(t, Failure, got[0].Result)
}
