package imap

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUIDValidityIsStableAndNonzero(t *testing.T) {
	assert.Equal(t, UIDValidity(alice), UIDValidity("ALICE@example.com"), "the address's case does not matter")
	assert.NotEqual(t, UIDValidity(alice), UIDValidity("bob@example.com"))
	assert.NotZero(t, UIDValidity(""))
}
