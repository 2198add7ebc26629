package node

// The node's HTTP listener (--http): /healthz and /readyz for load
// balancers and orchestrators, and the operator endpoints (status,
// metrics, rebalance, quarantine, trace) behind the admin token when one
// is set (docs/access.md). Webmail and the fax/voicemail gateway mount on
// the same mux (webmail.go).

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// httpHandler serves /healthz, /readyz and the status on --http.
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if live := len(n.members.Table().Ring); live < n.conf().WriteQuorum {
			http.Error(w, fmt.Sprintf("not ready: %d live storage nodes, write quorum %d\n", live, n.conf().WriteQuorum), http.StatusServiceUnavailable)
			return
		}
		if st := n.ready.State(); !st.Ready {
			http.Error(w, fmt.Sprintf("not ready: %s: %s\n", st.Reason, st.Detail), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	// Operator endpoints: bind --http to an address only operators reach,
	// or set admin-token (docs/access.md).
	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, n.adminOnly(h)) }
	admin("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.Status()) })
	admin("GET /metrics", n.metrics.handler().ServeHTTP)
	admin("POST /v1/rebalance", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.RebalanceAll(r.Context()))
	})
	// Draining a node (drain.go): this one or another, over the peer API.
	admin("POST /v1/drain/{node}", func(w http.ResponseWriter, r *http.Request) { n.serveDrain(w, r, true) })
	admin("GET /v1/drain/{node}", func(w http.ResponseWriter, r *http.Request) { n.serveDrain(w, r, false) })
	admin("GET /v1/quarantine", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.Quarantined()) })
	admin("GET /v1/quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		data, err := n.QuarantinedMessage(r.Context(), r.PathValue("id"))
		if err != nil {
			httpError(w, err)
			return
		}
		// RFC 2046 §5.2.1: a whole message. nosniff keeps a browser from
		// rendering held mail as a page.
		w.Header().Set("Content-Type", "message/rfc822")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(data)
	})
	admin("POST /v1/quarantine/{id}/release", func(w http.ResponseWriter, r *http.Request) {
		if err := n.Release(r.Context(), r.PathValue("id")); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	admin("DELETE /v1/quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := n.DeleteQuarantined(r.Context(), r.PathValue("id")); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	admin("GET /v1/trace/{id}", func(w http.ResponseWriter, r *http.Request) {
		es := n.Trace(r.PathValue("id"))
		if len(es) == 0 {
			http.Error(w, "no such message", http.StatusNotFound)
			return
		}
		writeJSON(w, es)
	})
	n.mountWeb(mux) // webmail and the fax/voicemail gateway (webmail.go)
	return mux
}

// adminOnly lets a request through to h only with the admin token, when
// one is configured; a refusal is logged with the client's address.
func (n *Node) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read at each request: a configuration reload changes it live.
		want := n.conf().AdminToken
		if want == "" {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			n.log.Warn("http: operator request without the admin token", "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailarray"`)
			http.Error(w, "admin token required (Authorization: Bearer; mailarray commands send $MAILARRAY_ADMIN_TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// RebalanceAll asks this node and every live peer to move copies to their
// balanced placement, and returns each node's answer ("ok" or an error).
func (n *Node) RebalanceAll(ctx context.Context) map[string]string {
	out := map[string]string{n.conf().Name: "ok"}
	n.repl.TriggerRebalance()
	for _, m := range n.members.Live() {
		if m.Name == n.conf().Name {
			continue
		}
		if err := n.peer.Rebalance(ctx, m.Name); err != nil {
			out[m.Name] = err.Error()
		} else {
			out[m.Name] = "ok"
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, errNotQuarantined) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}
