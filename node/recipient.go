package node

import "mailarray/node/smtp"

// knownRecipient says whether addr (normal form) names a mailbox, for the
// SMTP listener's RCPT: nil, smtp.ErrUnknownMailbox (550 5.1.1, the
// sender's MTA bounces) or smtp.ErrNotYet (450 4.1.1, it retries).
//
// A mailbox just added to the users file is unknown until the watcher's
// next polls load it (about 2 to 4 s), and a permanent refusal in that
// window bounces real mail. Two measures, chosen over a blanket 450 for a
// window after each reload (which would also delay the refusal of every
// mistyped address, and not help a mailbox whose line the watcher has not
// seen yet): an unknown address first makes the directory load a changed
// file at once (directory.LookupFresh: one stat per unknown address), so
// the common case, an operator adding a line and mail arriving a moment
// later, is simply accepted; and an address still unknown while the file
// changed moments ago gets 450, since that load may have caught the file
// half-written.
func (n *Node) knownRecipient(addr string) error {
	if _, ok := n.dir.Lookup(addr); ok {
		return nil
	}
	_, ok, recent := n.dir.LookupFresh(addr)
	switch {
	case ok:
		return nil
	case recent:
		return smtp.ErrNotYet
	}
	return smtp.ErrUnknownMailbox
}
