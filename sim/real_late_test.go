package sim

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLateDeletions: a reader whose QUIT is answered (or cut) after the
// report was taken still marks its deletions, so the checks do not count
// what it emptied as lost.
func TestLateDeletions(t *testing.T) {
	g := &realGen{readTally: newReadTally()}
	rep := &Report{Records: []Record{{ID: "a"}, {ID: "b"}, {ID: "c"}, {}}}
	g.deleted["a.0"] = true
	g.maybeDel["b.0"] = true
	g.lateDeletions(rep)
	assert.True(t, rep.Records[0].Deleted)
	assert.True(t, rep.Records[1].MaybeDeleted)
	assert.False(t, rep.Records[2].Deleted || rep.Records[2].MaybeDeleted)
	assert.False(t, rep.Records[3].Deleted || rep.Records[3].MaybeDeleted, "no id: never sent")
}
