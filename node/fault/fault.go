// Package fault names the points of node code where a fault can be
// injected, and is the one way node code asks whether to fail there.
//
// Two mechanisms inject faults, and each point is named once for both:
//
//   - the node's fault hook (env.FaultHook, passed in as Ask): node tests
//     and any Env that sets one;
//   - a failpoint marker (github.com/pingcap/failpoint), compiled to
//     nothing in an ordinary build and rewritten by `make chaos`
//     (chaos/scratch.sh) into a call of whatever the chaos suite
//     registered with failpoint.EnableCall.
//
// A hook may also wait and fail nothing: Delays (delay.go) is a real
// process's emulated slow hardware, from `mailarray serve --test-fault`.
//
// Inject holds the only marker: failpoint-ctl rewrites failpoint.InjectCall
// syntactically, and its name argument need not be a literal, so the
// rewritten marker registers every point as Package + "/" + name (Path).
// The chaos suite's list of failpoints (chaos/failpoints.go) refers to
// these constants; chaos/markers_test.go checks that this list, the call
// sites under node/ and the chaos matrix agree.
package fault

import (
	"reflect"

	"github.com/pingcap/failpoint"
)

// Point names one fault point.
type Point string

// The fault points, by the step they fail. A point may have several call
// sites when they are the same step (store.write: the local-only delivery
// and writeLocal).
const (
	SMTPDeliver        Point = "smtp.deliver"        // node/deliver.go: a DATA is refused before the pipeline
	PipelineFilter     Point = "pipeline.filter"     // node/inbound.go: the pipeline's fault filter fails the message
	StoreWrite         Point = "store.write"         // node/deliver.go: a copy and its pending entry are not written here
	StoreSync          Point = "store.sync"          // node/store: a group commit fails as a whole
	MirrorSend         Point = "mirror.send"         // node/deliver.go: a copy is not sent to its peer
	MirrorAck          Point = "mirror.ack"          // node/peer client: a copy lands but its acknowledgement is lost
	PeerFetch          Point = "peer.fetch"          // node/peer server: serving a copy fails (503)
	PeerApply          Point = "peer.apply"          // node/peer_backend.go: entries pushed by a peer are refused
	CatalogApply       Point = "catalog.apply"       // node/catalog: a merge of any origin is not applied
	CatalogCommit      Point = "catalog.commit"      // node/replica push: the local apply of a commit batch fails (retried)
	CatalogAntiEntropy Point = "catalog.antientropy" // node/replica: an anti-entropy round fails before it starts
	RebuildCopy        Point = "rebuild.copy"        // node/replica: the repair of one message fails
	POP3Delete         Point = "pop3.delete"         // node/retrieve.go: a QUIT's deletions fail
	LoadQuery          Point = "load.query"          // node/load.go: a peer's load report is lost
)

// Points lists every point, in the order of the constants.
func Points() []Point {
	return []Point{SMTPDeliver, PipelineFilter, StoreWrite, StoreSync, MirrorSend, MirrorAck, PeerFetch,
		PeerApply, CatalogApply, CatalogCommit, CatalogAntiEntropy, RebuildCopy, POP3Delete, LoadQuery}
}

// Package is the import path of this package: the rewritten marker
// registers its failpoints under it.
var Package = reflect.TypeFor[Point]().PkgPath()

// Path is p's name in the failpoint registry (failpoint.EnableCall).
func (p Point) Path() string { return Package + "/" + string(p) }

// Ask is a fault hook's question (env.FaultHook.Fault): a non-nil error
// fails the point. Nil asks nobody.
type Ask func(p Point) error

// Inject reports whether the step at p must fail: ask's answer first,
// then the failpoint's, which is called with that answer (the chaos
// suite counts the call but injects nothing over an error already set).
// where names the node for the failpoint: its name, or a path in its data
// directory where no name is at hand (store, catalog).
func Inject(ask Ask, p Point, where string) error {
	var err error
	if ask != nil {
		err = ask(p)
	}
	failpoint.InjectCall(string(p), where, &err) // rewritten by make chaos only; nothing otherwise
	return err
}
