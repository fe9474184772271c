package cluster

import (
	"fmt"
	"testing"
)

func TestPickSpreadsAndMovesOnlyTheJoinersShare(t *testing.T) {
	const n = 3000
	two := []string{"r1", "r2"}
	three := []string{"r1", "r2", "r3"}
	count := map[string]int{}
	moved := 0
	for i := range n {
		id := fmt.Sprintf("mbx-%d", i)
		before, after := Pick(id, two), Pick(id, three)
		if before != Pick(id, []string{"r2", "r1"}) {
			t.Fatalf("Pick depends on the order of the replicas")
		}
		count[after]++
		if before != after {
			moved++
			if after != "r3" {
				t.Fatalf("%s moved from %s to %s when r3 joined: only mailboxes that pick the new replica may move", id, before, after)
			}
		}
	}
	for _, r := range three {
		if c := count[r]; c < n/3*85/100 || c > n/3*115/100 {
			t.Errorf("replica %s picks %d of %d mailboxes, want about a third", r, c, n)
		}
	}
	if moved != count["r3"] {
		t.Errorf("%d mailboxes moved, want exactly r3's %d", moved, count["r3"])
	}
	if Pick("x", nil) != "" {
		t.Error("Pick over no replica must be empty")
	}
}
