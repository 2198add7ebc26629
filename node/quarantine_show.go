package node

import (
	"context"
	"fmt"
	"strings"
)

// QuarantinedMessage returns a quarantined message's bytes, read from any
// live copy, so that an operator can look at it before releasing it
// (`mailarray quarantine show ID`). An id that is not held in quarantine
// is errNotQuarantined: this is not a way to read anyone's mailbox.
func (n *Node) QuarantinedMessage(ctx context.Context, id string) ([]byte, error) {
	e, ok := n.cat.Get(id)
	if !ok || !e.Live() || !strings.HasPrefix(e.Mailbox, quarantinePrefix) {
		return nil, fmt.Errorf("%w: %s", errNotQuarantined, id)
	}
	return n.readMessage(ctx, &e)
}
