package peer

// The server half of the peer stream (stream.go has the protocol).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"mailarray/node/bufpool"
	"mailarray/node/catalog"
)

// handleStream upgrades a peer's connection to a stream and serves it.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), streamProto) {
		w.Header().Set("Upgrade", streamProto)
		http.Error(w, "upgrade to "+streamProto+" required", http.StatusUpgradeRequired)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot upgrade", http.StatusInternalServerError)
		return
	}
	// The server forgets a hijacked connection: the Server closes
	// it on shutdown, and waits for it.
	s.smu.Lock()
	if s.sclosed {
		s.smu.Unlock()
		conn.Close()
		return
	}
	if s.sconns == nil {
		s.sconns = make(map[net.Conn]struct{})
	}
	s.sconns[conn] = struct{}{}
	s.swg.Add(1)
	s.smu.Unlock()
	defer func() {
		s.smu.Lock()
		delete(s.sconns, conn)
		s.smu.Unlock()
		s.swg.Done()
	}()
	// net/http leaves its header deadlines on a hijacked connection.
	conn.SetDeadline(time.Time{})
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + streamProto + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return
	}
	s.serveStream(conn, brw.Reader)
}

// serveStream runs the requests of one stream until it ends.
func (s *Server) serveStream(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	var (
		wg sync.WaitGroup
		// One reply written at a time; a channel for the reason of
		// peerStream.wlock.
		wlock  = make(chan struct{}, 1)
		budget = make(chan struct{}, streamBudget/streamBudgetUnit)
	)
	defer wg.Wait()
	var hdr [streamReqHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.cfg.Log.Debug("peer: stream ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:])) - (streamReqHeader - 4)
		if n < 0 || n > streamLimit(hdr[8]) {
			s.cfg.Log.Warn("peer: stream frame refused; closing the stream", "remote", conn.RemoteAddr().String(), "op", hdr[8], "bytes", n)
			return
		}
		// The budget is taken before the body is allocated: a peer cannot
		// make the node hold more than streamBudget for it at once.
		units := 1 + int(n/streamBudgetUnit)
		for range units {
			budget <- struct{}{}
		}
		body := bufpool.Get(int(n))[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			s.cfg.Log.Debug("peer: stream ended inside a frame", "remote", conn.RemoteAddr().String(), "err", err)
			bufpool.Put(body)
			for range units {
				<-budget
			}
			return
		}
		id, code := binary.BigEndian.Uint32(hdr[4:]), hdr[8]
		wg.Add(1)
		go func() {
			defer func() {
				for range units {
					<-budget
				}
				wg.Done()
			}()
			status, text := s.streamRequest(code, body)
			bufpool.Put(body)
			if len(text) > streamMaxReply {
				text = text[:streamMaxReply]
			}
			var buf [streamReplyHeader + 64]byte
			reply := append(buf[:streamReplyHeader], text...)
			binary.BigEndian.PutUint32(reply[0:], uint32(len(reply)-4))
			binary.BigEndian.PutUint32(reply[4:], id)
			binary.BigEndian.PutUint16(reply[8:], uint16(status))
			wlock <- struct{}{}
			_, err := conn.Write(reply)
			<-wlock
			if err != nil {
				conn.Close()
			}
		}()
	}
}

// streamLimit is the largest body a request of op may have: the client
// sends larger copies over HTTP, and an unknown op gets an error reply.
func streamLimit(op byte) int64 {
	switch op {
	case opPutCopy:
		return 4 + streamMaxEntry + streamMaxCopy
	case opPushEntries:
		return MaxEntriesBytes
	}
	return streamBudgetUnit
}

// streamRequest runs one stream request: the status and error text the
// HTTP request of the same meaning would have answered.
func (s *Server) streamRequest(code byte, body []byte) (int, string) {
	switch code {
	case opPutCopy:
		if len(body) < 4 {
			return http.StatusBadRequest, "bad entry"
		}
		k := binary.BigEndian.Uint32(body)
		if uint64(k) > uint64(len(body)-4) || k > streamMaxEntry {
			return http.StatusBadRequest, "bad entry"
		}
		e, err := catalog.Decode(body[4 : 4+k])
		if err != nil {
			return http.StatusBadRequest, "bad entry"
		}
		return s.storeCopy(e, body[4+k:])
	case opPushEntries:
		return s.applyEntries(body)
	}
	return http.StatusBadRequest, fmt.Sprintf("unknown stream op %d", code)
}

// closeStreams closes the served streams and waits for their requests.
func (s *Server) closeStreams() {
	s.smu.Lock()
	s.sclosed = true
	conns := make([]net.Conn, 0, len(s.sconns))
	for c := range s.sconns {
		conns = append(conns, c)
	}
	s.smu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	s.swg.Wait()
}
