package realsoak

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"

	"mailarray/bench"
	"mailarray/node/catalog"
)

// The live phantom-holder scan runs before the POP3 read check, because a
// read repairs the copies it finds missing (node/retrieve.go readMessage)
// and would hide them from the scan of the files at the end.

// peerKeyHeader carries the array's --peer-key on the peer API
// (node/peer.go headerKey).
const peerKeyHeader = "X-Mailarray-Key"

// liveHolders asks every node for its catalog (GET /v1/buckets/{b} on the
// peer API) and every listed holder of a committed entry whether it holds
// the copy (HEAD /v1/copies/{id}); each "no" is a phantom holder.
func liveHolders(ctx context.Context, cl *bench.Cluster, key string) (Finding, error) {
	var f Finding
	listed := map[loc]string{} // -> a node whose catalog lists it
	for _, name := range nodeNames {
		for b := range catalog.Buckets {
			entries, err := bucket(ctx, cl.Node(name).Peer, key, b)
			if err != nil {
				return f, fmt.Errorf("realsoak: catalog of %s: %w", name, err)
			}
			for _, e := range entries {
				if e.State != catalog.Committed {
					continue
				}
				for _, l := range e.Locations {
					if _, ok := listed[loc{e.ID, l}]; !ok {
						listed[loc{e.ID, l}] = name
					}
				}
			}
		}
	}
	for _, k := range sortedLocs(listed) {
		n := cl.Node(k.node)
		if n == nil {
			f.Add(k.id + "@" + k.node + " (not a node of the array)")
			continue
		}
		has, err := headCopy(ctx, n.Peer, key, k.id)
		if err != nil {
			return f, fmt.Errorf("realsoak: copy %s on %s: %w", k.id, k.node, err)
		}
		if !has {
			f.Add(fmt.Sprintf("%s@%s (listed by %s)", k.id, k.node, listed[k]))
		}
	}
	return f, nil
}

// loc is a copy's place: a message on a node.
type loc struct{ id, node string }

// sortedLocs is m's keys by message, then node: the order findings are
// listed in.
func sortedLocs[V any](m map[loc]V) []loc {
	keys := make([]loc, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].id != keys[j].id {
			return keys[i].id < keys[j].id
		}
		return keys[i].node < keys[j].node
	})
	return keys
}

func peerRequest(ctx context.Context, method, url, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(peerKeyHeader, key)
	return statusClient.Do(req)
}

// bucket fetches one catalog bucket: entries, each led by its length
// (uvarint), as node/peer.go encodes them.
func bucket(ctx context.Context, peer, key string, b int) ([]catalog.Entry, error) {
	resp, err := peerRequest(ctx, http.MethodGet, "http://"+peer+"/v1/buckets/"+strconv.Itoa(b), key)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bucket %d: %s", b, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out []catalog.Entry
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, catalog.ErrBadEncoding
		}
		e, err := catalog.Decode(body[k : k+int(n)])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		body = body[k+int(n):]
	}
	return out, nil
}

// headCopy reports whether the node at peer stores copy id.
func headCopy(ctx context.Context, peer, key, id string) (bool, error) {
	resp, err := peerRequest(ctx, http.MethodHead, "http://"+peer+"/v1/copies/"+id, key)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD: %s", resp.Status)
}
