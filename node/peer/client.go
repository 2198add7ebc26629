package peer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/store"
)

// Client is a node's side of the protocol towards its peers: one HTTP
// transport and one stream per peer address (stream.go). Safe for
// concurrent use; Close ends it.
type Client struct {
	cfg     Config
	tr      *http.Transport
	scheme  string
	streams streams
}

// NewClient returns a client over cfg.Dial to the addresses cfg.Resolver
// gives, speaking TLS when cfg.TLS is set and sending cfg.Key.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		// A peer that vanished without a reset (host down, partition) must
		// not hold a write for the whole request timeout.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, DialTimeout)
			defer cancel()
			return cfg.Dial(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{cfg: cfg, tr: tr, scheme: "http://"}
	c.streams.c = c
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.client
		c.scheme = "https://"
	}
	return c, nil
}

// Close ends the streams, waiting for their readers, and the idle
// connections.
func (c *Client) Close() {
	c.streams.close()
	c.tr.CloseIdleConnections()
}

func (c *Client) url(node, path string) (string, error) {
	addr := c.cfg.Resolver.PeerAddr(node)
	if addr == "" {
		return "", fmt.Errorf("%w: %s", ErrUnreachable, node)
	}
	return c.scheme + addr + path, nil
}

func (c *Client) do(ctx context.Context, method, node, path string, body []byte, hdr http.Header) (*http.Response, error) {
	u, err := c.url(node, path)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The timeout covers the exchange and the reading of the body; the
	// body's Close ends it.
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.cfg.Key != "" {
		req.Header.Set(headerKey, c.cfg.Key)
	}
	// The transport itself, not an http.Client: the peer API neither
	// redirects nor sets cookies, and the client's support for both cloned
	// every request's header and armed a second timer per request.
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("peer: %s %s %s: %w", node, method, path, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// cancelOnClose ends a request's context when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// call runs a request and returns the body of a 2xx answer.
func (c *Client) call(ctx context.Context, method, node, path string, body []byte, hdr http.Header) (int, []byte, error) {
	return c.callInto(ctx, method, node, path, body, hdr, nil)
}

// callInto is call reading the answer into dst when it fits (readBodyInto).
func (c *Client) callInto(ctx context.Context, method, node, path string, body []byte, hdr http.Header, dst []byte) (int, []byte, error) {
	resp, err := c.do(ctx, method, node, path, body, hdr)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := readBodyInto(dst, resp.Body, resp.ContentLength, -1)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("peer: %s %s: read: %w", node, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, b, fmt.Errorf("peer: %s %s %s: %s: %s", node, method, path, resp.Status, bytes.TrimSpace(b))
	}
	return resp.StatusCode, b, nil
}

// PutCopy stores data on node with its pending entry e: over node's
// stream, or over HTTP for a large copy or a peer without the stream. It
// returns nil once node holds the copy durably, and an error wrapping
// ErrCopyDeleted if node refused it for a tombstone.
func (c *Client) PutCopy(ctx context.Context, node string, data []byte, e *catalog.Entry) error {
	enc := e.Encode(nil)
	ok, err := false, error(nil)
	if len(data) <= streamMaxCopy && len(enc) <= streamMaxEntry {
		ok, err = c.streams.call(ctx, node, "put copy", opPutCopy, func(b []byte) []byte {
			b = binary.BigEndian.AppendUint32(b, uint32(len(enc)))
			return append(append(b, enc...), data...)
		})
	}
	if !ok {
		var code int
		code, _, err = c.call(ctx, http.MethodPut, node, "/v1/copies/"+url.PathEscape(e.ID), data,
			http.Header{headerEntry: {base64.StdEncoding.EncodeToString(enc)}})
		if code == http.StatusConflict {
			err = fmt.Errorf("%w: on %s: %w", ErrCopyDeleted, node, err)
		}
	} else if se := (*streamStatusError)(nil); errors.As(err, &se) && se.status == http.StatusConflict {
		err = fmt.Errorf("%w: on %s: %w", ErrCopyDeleted, node, err)
	}
	if err == nil {
		// The copy landed on node but its acknowledgement is lost on the
		// way back.
		err = c.cfg.inject(fault.MirrorAck)
	}
	return err
}

// FetchCopy gets a copy from node and verifies it against sum: a copy
// that does not match, or that node reports failing its own checksum, is
// store.ErrCorrupt; one node lacks is store.ErrNotFound (the reader
// repairs both from a good copy).
func (c *Client) FetchCopy(ctx context.Context, node, id string, sum [32]byte) ([]byte, error) {
	code, b, err := c.call(ctx, http.MethodGet, node, "/v1/copies/"+url.PathEscape(id), nil, nil)
	switch {
	case code == http.StatusNotFound:
		// The holder's own answers (handleGetCopy), told apart so the
		// reader repairs that copy from a good one.
		return nil, fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case code == http.StatusConflict:
		return nil, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	case err != nil:
		return nil, err
	}
	if store.Checksum(b) != sum {
		return nil, fmt.Errorf("%w: copy of %s from %s", store.ErrCorrupt, id, node)
	}
	return b, nil
}

// FetchCopies asks node for the copies of at most CopyBatchMax ids; a nil
// slot is a copy not returned (missing, corrupt, skipped), to be read one
// by one. The caller verifies each copy against its entry.
func (c *Client) FetchCopies(ctx context.Context, node string, ids []string) ([][]byte, error) {
	return c.FetchCopiesInto(ctx, node, ids, nil)
}

// CopyBatchFraming bounds the bytes a copy batch's answer adds to each
// copy (its status byte and length): sizing dst for FetchCopiesInto.
const CopyBatchFraming = 1 + binary.MaxVarintLen64

// FetchCopiesInto is FetchCopies reading the answer into dst when it fits
// (its capacity from dst's length on; the copies returned point into it),
// so that a reader going through a mailbox batch after batch (a FETCH, a
// POP3 read-ahead) reuses one buffer instead of allocating an answer per
// batch: those answers were the largest share of what a FETCH allocated.
func (c *Client) FetchCopiesInto(ctx context.Context, node string, ids []string, dst []byte) ([][]byte, error) {
	_, b, err := c.callInto(ctx, http.MethodPost, node, "/v1/copy-batch", encodeIDs(ids), nil, dst[len(dst):])
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	for i := range ids {
		if len(b) == 0 {
			return nil, fmt.Errorf("peer: %s: short copy batch", node)
		}
		st := b[0]
		b = b[1:]
		if st != batchOK {
			continue
		}
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("peer: %s: bad copy batch", node)
		}
		out[i] = b[k : k+int(l) : k+int(l)]
		b = b[k+int(l):]
	}
	return out, nil
}

// HasCopy reports whether node holds a copy of id.
func (c *Client) HasCopy(ctx context.Context, node, id string) (bool, error) {
	code, _, err := c.call(ctx, http.MethodHead, node, "/v1/copies/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// PushEntries merges entries into node's catalog.
func (c *Client) PushEntries(ctx context.Context, node string, entries []catalog.Entry) error {
	ok, err := c.streams.call(ctx, node, "push entries", opPushEntries, func(b []byte) []byte {
		return appendEntries(b, entries)
	})
	if !ok {
		_, _, err = c.call(ctx, http.MethodPost, node, "/v1/entries", EncodeEntries(entries), nil)
	}
	return err
}

// GetEntry returns node's catalog entry of id; false if it has none.
func (c *Client) GetEntry(ctx context.Context, node, id string) (catalog.Entry, bool, error) {
	code, b, err := c.call(ctx, http.MethodGet, node, "/v1/entries/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound {
		return catalog.Entry{}, false, nil
	}
	if err != nil {
		return catalog.Entry{}, false, err
	}
	e, err := catalog.Decode(b)
	return e, err == nil, err
}

// Buckets fetches node's bucket digests, trading horizons on the way: it
// sends mine and returns node's (Horizon), which the caller must take
// before it computes its own digests (they were taken at node's horizon).
func (c *Client) Buckets(ctx context.Context, node string, mine Horizon) ([catalog.Buckets]uint64, Horizon, error) {
	var out [catalog.Buckets]uint64
	hdr := http.Header{}
	setHorizon(hdr.Set, mine)
	resp, err := c.do(ctx, http.MethodGet, node, "/v1/buckets", nil, hdr)
	if err != nil {
		return out, Horizon{}, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, resp.ContentLength, -1)
	if err != nil {
		return out, Horizon{}, fmt.Errorf("peer: %s /v1/buckets: read: %w", node, err)
	}
	if resp.StatusCode/100 != 2 {
		return out, Horizon{}, fmt.Errorf("peer: %s GET /v1/buckets: %s", node, resp.Status)
	}
	if len(b) != 8*catalog.Buckets {
		return out, Horizon{}, fmt.Errorf("peer: %s: bucket digests of %d bytes", node, len(b))
	}
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	theirs := horizonOf(resp.Header)
	theirs.From = ""
	return out, theirs, nil
}

// Bucket returns the entries of node's bucket b.
func (c *Client) Bucket(ctx context.Context, node string, b int) ([]catalog.Entry, error) {
	_, body, err := c.call(ctx, http.MethodGet, node, "/v1/buckets/"+strconv.Itoa(b), nil, nil)
	if err != nil {
		return nil, err
	}
	return DecodeEntries(body)
}

// Lock takes or renews mailbox's lease for owner on manager node: false
// (and no error) if another owner holds it.
func (c *Client) Lock(ctx context.Context, node, mailbox, owner string, ttl time.Duration) (bool, error) {
	q := "?owner=" + url.QueryEscape(owner) + "&ttl_ms=" + strconv.FormatInt(ttl.Milliseconds(), 10)
	code, _, err := c.call(ctx, http.MethodPost, node, "/v1/locks/"+url.PathEscape(mailbox)+q, nil, nil)
	if code == http.StatusConflict {
		return false, nil
	}
	return err == nil, err
}

// Unlock releases owner's lease of mailbox on manager node.
func (c *Client) Unlock(ctx context.Context, node, mailbox, owner string) error {
	_, _, err := c.call(ctx, http.MethodDelete, node, "/v1/locks/"+url.PathEscape(mailbox)+"?owner="+url.QueryEscape(owner), nil, nil)
	return err
}

// UIDs asks node for mailbox's highest IMAP UID and its entries with a
// UID above since.
func (c *Client) UIDs(ctx context.Context, node, mailbox string, since uint32) (uint32, []catalog.Entry, error) {
	_, b, err := c.call(ctx, http.MethodGet, node, "/v1/uids/"+url.PathEscape(mailbox)+"?since="+strconv.FormatUint(uint64(since), 10), nil, nil)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("peer: %s: short UID answer", node)
	}
	entries, err := DecodeEntries(b[4:])
	if err != nil {
		return 0, nil, err
	}
	return binary.LittleEndian.Uint32(b), entries, nil
}

// Abort asks the listener node to abort the transaction of pending entry
// id. A peer without the endpoint is ErrNoAbortEndpoint.
func (c *Client) Abort(ctx context.Context, node, id string) (AbortReply, error) {
	var out AbortReply
	code, b, err := c.call(ctx, http.MethodPost, node, "/v1/abort/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		return out, fmt.Errorf("%w: %s", ErrNoAbortEndpoint, node)
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("peer: %s abort %s: %w", node, id, err)
	}
	return out, nil
}

// Load decodes node's load report into v.
func (c *Client) Load(ctx context.Context, node string, v any) error {
	return c.getJSON(ctx, node, "/v1/load", v)
}

// Status decodes node's status into v.
func (c *Client) Status(ctx context.Context, node string, v any) error {
	return c.getJSON(ctx, node, "/v1/status", v)
}

// Rebalance asks node to start moving copies to their current placement.
func (c *Client) Rebalance(ctx context.Context, node string) error {
	_, _, err := c.call(ctx, http.MethodPost, node, "/v1/rebalance", nil, nil)
	return err
}

// Drain asks node to start draining (start) or for its drain's progress,
// decoded into v. A refusal wraps ErrDrainRefused.
func (c *Client) Drain(ctx context.Context, node string, start bool, v any) error {
	method := http.MethodGet
	if start {
		method = http.MethodPost
	}
	code, b, err := c.call(ctx, method, node, "/v1/drain", nil, nil)
	if code == http.StatusConflict {
		return fmt.Errorf("%w: %w", ErrDrainRefused, err)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (c *Client) getJSON(ctx context.Context, node, path string, v any) error {
	_, b, err := c.call(ctx, http.MethodGet, node, path, nil, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
