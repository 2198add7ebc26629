package smtp

// Recipient probing. Without a limit a client learns which mailboxes
// exist by naming recipients as fast as the server answers 550 5.1.1. A
// session that names more than UnknownRcptTarpitAfter unknown recipients
// gets each further refusal UnknownRcptDelay late, and at MaxUnknownRcpts
// a 421 4.7.0 after which the connection is closed. The count also runs
// per client address (IPv4, or IPv6 /64) across sessions, so reconnecting
// does not reset it: past MaxUnknownRcptsPerIP in UnknownRcptWindow the
// next unknown recipient gets the delay and the 421 at once. Waits run on
// the session's goroutine with time.After (the simulator's synctest
// clock drives them) and end early at Shutdown or Close.

import (
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// errProbing ends a probing session. RFC 5321 section 3.8 lets a server
// close with 421; RFC 3463 X.7.0: other security or policy status.
var errProbing = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Too many unknown recipients, closing connection"}

// fillTarpitDefaults fills zero limits from d.
func (c *Config) fillTarpitDefaults(d Config) {
	if c.UnknownRcptTarpitAfter == 0 {
		c.UnknownRcptTarpitAfter = d.UnknownRcptTarpitAfter
	}
	if c.UnknownRcptDelay == 0 {
		c.UnknownRcptDelay = d.UnknownRcptDelay
	}
	if c.MaxUnknownRcpts == 0 {
		c.MaxUnknownRcpts = d.MaxUnknownRcpts
	}
	if c.MaxUnknownRcptsPerIP == 0 {
		c.MaxUnknownRcptsPerIP = d.MaxUnknownRcptsPerIP
	}
	if c.UnknownRcptWindow == 0 {
		c.UnknownRcptWindow = d.UnknownRcptWindow
	}
}

// unknownRecipient counts an unknown recipient named in ss, waits if the
// session or its address is past the tarpit threshold, and returns the
// 421 that ends the session (nil: answer the usual 550).
func (ss *session) unknownRecipient() *gosmtp.SMTPError {
	cfg := ss.srv.limits()
	ss.unknown++
	addrOK, _ := ss.srv.unknownRcpts.Begin(time.Now(), ss.addrKey)
	if ss.unknown <= cfg.UnknownRcptTarpitAfter && addrOK {
		return nil
	}
	stopped := false
	select {
	case <-time.After(cfg.UnknownRcptDelay):
	case <-ss.srv.stop:
		stopped = true
	}
	if stopped {
		if ss.dc != nil {
			ss.dc.hangup.Store(true)
		}
		return errShuttingDown
	}
	if ss.unknown < cfg.MaxUnknownRcpts && addrOK {
		return nil
	}
	ss.srv.log.Warn("smtp: too many unknown recipients; closing", "remote", ss.remote.String(), "addr", ss.addrKey,
		"session_unknown", ss.unknown, "address_over_limit", !addrOK)
	if ss.dc != nil {
		ss.dc.hangup.Store(true)
	}
	return errProbing
}

// stopTarpits ends every tarpit wait, now and later.
func (s *Server) stopTarpits() { s.stopOnce.Do(func() { close(s.stop) }) }
