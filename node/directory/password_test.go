package directory

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	for _, pw := range []string{"hunter2", "with:colon and spaces", strings.Repeat("ü", 36)} {
		h, err := HashPassword(pw, minHashCost)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(h, "{BCRYPT}$2a$04$"), "got %q", h)

		// The output is a valid secret for a file line.
		entries, problems := Parse(strings.NewReader("a@example.com:"+h), "f")
		require.Empty(t, problems)
		d, err := NewFromEntries(DefaultConfig(), nil, entries...)
		require.NoError(t, err)
		_, err = d.Authenticate("a@example.com", pw)
		assert.NoError(t, err, "right password")
		_, err = d.Authenticate("a@example.com", pw+"x")
		assert.ErrorIs(t, err, ErrAuth, "wrong password")
	}
}

func TestHashPasswordDefaultCost(t *testing.T) {
	if testing.Short() {
		t.Skip("bcrypt at the default cost is slow")
	}
	h, err := HashPassword("pw", 0)
	require.NoError(t, err)
	cost, err := bcrypt.Cost([]byte(strings.TrimPrefix(h, "{BCRYPT}")))
	require.NoError(t, err)
	assert.Equal(t, DefaultCost, cost)
	assert.Equal(t, 10, cost)
}

func TestHashPasswordRefuses(t *testing.T) {
	tests := []struct {
		name string
		pw   string
		cost int
		want string
	}{
		{"empty", "", 4, "directory: hash password: empty password"},
		{"too long", strings.Repeat("x", 73), 4, "directory: hash password: bcrypt: password length exceeds 72 bytes"},
		{"cost too low", "pw", 3, "directory: hash password: cost 3 outside 4..16"},
		{"cost too high", "pw", 17, "directory: hash password: cost 17 outside 4..16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HashPassword(tt.pw, tt.cost)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
		})
	}
}

// The dummy hash must be one bcrypt accepts and computes (else an unknown
// address would answer fast) and that the password does not match.
func TestDummyHash(t *testing.T) {
	for _, cost := range []int{4, 5} {
		h := dummyHash(cost)
		assert.Empty(t, checkBcryptHash(string(h)))
		got, err := bcrypt.Cost(h)
		require.NoError(t, err)
		assert.Equal(t, cost, got)
		assert.ErrorIs(t, bcrypt.CompareHashAndPassword(h, []byte("hunter2")), bcrypt.ErrMismatchedHashAndPassword)
	}
}

func TestDummyCostFollowsTheFile(t *testing.T) {
	h5, err := HashPassword("x", 5)
	require.NoError(t, err)
	mk := func(addr, secret string) Entry {
		scheme, s, _ := strings.Cut(strings.TrimPrefix(secret, "{"), "}")
		return Entry{Mailbox: Mailbox{Address: addr}, Scheme: Scheme(scheme), Secret: Secret(s)}
	}
	tests := []struct {
		name    string
		entries []Entry
		want    string // "" for no dummy
	}{
		{"plain only", []Entry{mk("a@x.example", "{PLAIN}p")}, ""},
		{"most common cost", []Entry{mk("a@x.example", "{BCRYPT}"+hunter2Cost4), mk("b@x.example", "{BCRYPT}"+hunter2Cost4), mk("c@x.example", h5)}, string(dummyHash(4))},
		{"higher on a tie", []Entry{mk("a@x.example", "{BCRYPT}"+hunter2Cost4), mk("c@x.example", h5)}, string(dummyHash(5))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewFromEntries(DefaultConfig(), nil, tt.entries...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(d.cur.Load().dummy))
		})
	}
}
