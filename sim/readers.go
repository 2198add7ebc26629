package sim

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"mailarray/node/pop3"
)

// readTally is what the POP3 readers of a load generator (simulated or
// real) have done, guarded by the generator's mutex.
type readTally struct {
	rstats   ReaderStats
	deleted  map[string]bool // copy ids deleted by readers (QUIT +OK)
	maybeDel map[string]bool // DELE sent but QUIT failed: in doubt
}

func newReadTally() readTally {
	return readTally{
		rstats:  ReaderStats{ErrorsBy: map[string]int{}},
		deleted: map[string]bool{}, maybeDel: map[string]bool{},
	}
}

// snapshot copies recs for the report, each marked deleted (or maybe
// deleted) as the readers found it; the caller holds the mutex that guards
// t.
func (t *readTally) snapshot(recs []*Record) []Record {
	out := make([]Record, len(recs))
	for i, rec := range recs {
		out[i] = *rec
		out[i].Deleted = rec.ID != "" && t.deleted[rec.ID+".0"]
		out[i].MaybeDeleted = rec.ID != "" && t.maybeDel[rec.ID+".0"]
	}
	return out
}

// fail counts a reader error of kind; mu guards t.
func (t *readTally) fail(mu *sync.Mutex, kind string) {
	mu.Lock()
	t.rstats.Errors++
	t.rstats.ErrorsBy[kind]++
	mu.Unlock()
}

// readSession logs in to box's mailbox over conn, retrieves and deletes
// up to readMax messages and quits, counting in t (guarded by mu). It
// closes conn.
func (t *readTally) readSession(ctx context.Context, mu *sync.Mutex, conn net.Conn, timeout time.Duration, user, pass string, readMax int) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := pop3.NewClient(conn)
	if err != nil {
		conn.Close()
		t.fail(mu, "greeting")
		return
	}
	defer c.Close()
	c.SetTimeout(timeout)
	if err := c.Login(user, pass); err != nil {
		if code := pop3.ErrorCode(err); code != "" {
			t.fail(mu, "login "+code)
		} else {
			t.fail(mu, "login")
		}
		return
	}
	uids, err := c.Uidl()
	if err != nil {
		t.fail(mu, "uidl")
		return
	}
	// dele: DELE answered +OK. doubt: a DELE whose answer was lost — the
	// server may have marked the message, and the QUIT below then removes
	// it (the real-process soak, seed 36, counted such a message lost).
	var dele, doubt []string
	for _, u := range uids[:min(len(uids), readMax)] {
		if _, err := c.Retr(u.Num); err != nil {
			t.fail(mu, "retr")
			break
		}
		mu.Lock()
		t.rstats.Retrieved++
		mu.Unlock()
		if err := c.Dele(u.Num); err != nil {
			t.fail(mu, "dele")
			doubt = append(doubt, u.ID)
			break
		}
		dele = append(dele, u.ID)
	}
	if ctx.Err() != nil {
		// Cut: no QUIT, so the server removes nothing. The deadline the
		// cut set does not outlast the client's next command (each sets
		// its own), so a QUIT sent now would still go through.
		return
	}
	err = c.Quit()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range dele {
		if err == nil {
			t.deleted[id] = true
			t.rstats.Deleted++
		} else {
			t.maybeDel[id] = true
		}
	}
	for _, id := range doubt {
		t.maybeDel[id] = true
	}
	if err != nil {
		t.rstats.Errors++
		t.rstats.ErrorsBy["quit"]++
	}
}

// mailboxPassword is the password the scenarios give mailbox box.
func mailboxPassword(box int) string { return "pw" + strconv.Itoa(box+1) }
