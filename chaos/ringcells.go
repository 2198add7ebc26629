package chaos

import "time"

// bug16 is the bug the ring cells guard against (issue 16, fixed in
// node/replica/maintain.go).
const bug16 = "issue 16: a node that saw fewer live storage nodes than R rewrote the entries it held to list only itself (make soak-real, TestRunKill)"

// RingCells bring the array below R live storage nodes: three nodes, R=2
// W=2, and n2 and n3 crash together under load, so that n1 sees a ring of
// itself alone for about six maintenance passes (node Tuning.MaintainEvery
// is 2 s, and a membership change kicks one) while it refuses the mail it
// cannot replicate; then both restart with their data. On code with the
// bug, n1's rebuild rewrote every entry it held to list itself alone, with
// a version that wins everywhere: the copies n2 and n3 hold were unlisted.
//
// In ring/one-left, n1 stays up and its rebuild lists them again once
// they are back: what is checked is that nothing on the way breaks. In
// ring/one-left-fails, n1 fails for good before its rebuild has caught
// up, so only n2 and n3 hold what n1 listed: the n1-n2 link stalls from
// before n2 returns (membership sees both alive, so n1's rebuild keeps
// trying to copy to n2, the next node on its ring, and gets nowhere),
// while anti-entropy between n1 and n3, which returns 2 s after n2, hands
// n1's catalog on; then n1 crashes. The stall ends after the crash. On
// code with the bug the entries n1 rewrote list a crashed node only: the
// checker's unlisted-copy rule (checker.go, invariant 9) sees the copies
// n2 and n3 hold outside entries that list fewer than R holders, and
// under-listed sees acknowledged mail no live holder is listed for.
func RingCells() []Cell {
	down := []string{"{at: 1500ms, action: crash, node: n2}", "{at: 1500ms, action: crash, node: n3}"}
	return []Cell{
		{Group: "ring", Name: "one-left", Nodes: 3, Exposes: bug16,
			Doc:    "3 nodes: n2 and n3 crash together under load and restart 12.5 s later with their data; n1 runs alone meanwhile (W=2 refuses)",
			Window: Window{1500 * time.Millisecond, 14 * time.Second},
			Faults: append(down[:2:2], "{at: 14s, action: restart, node: n2}", "{at: 14s, action: restart, node: n3}")},
		{Group: "ring", Name: "one-left-fails", Nodes: 3, Exposes: bug16,
			Doc:    "as ring/one-left, n3 restarting 2 s after n2 and the n1-n2 link stalled from 13 s to 25 s so that n1's rebuild cannot catch up; n1 crashes for good at 24 s: only n2 and n3 hold the copies n1 alone listed",
			Window: Window{1500 * time.Millisecond, 24 * time.Second},
			// Pending resolution and rebuild go one entry a pass (2 s)
			// after n1 is lost: 24 s of quiet left a few entries of the
			// transactions cut at 1.5 s pending (18 of 500 soak runs).
			Drain: 75 * time.Second,
			Faults: append(down[:2:2], "{at: 13s, action: stall_link, nodes: [n1, n2], for: 12s}",
				"{at: 14s, action: restart, node: n2}", "{at: 16s, action: restart, node: n3}", "{at: 24s, action: crash, node: n1}")},
	}
}
