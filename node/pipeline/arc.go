package pipeline

import (
	"context"

	"github.com/emersion/go-msgauth/authres"
)

// arcOutcome is the ARC chain validation of one message (RFC 8617).
type arcOutcome struct {
	value  authres.ResultValue // pass, fail or none
	sealer string              // d= of the newest ARC-Seal
}

func (a *Auth) checkARC(ctx context.Context, data []byte) arcOutcome {
	return arcOutcome{value: authres.ResultNone}
}
