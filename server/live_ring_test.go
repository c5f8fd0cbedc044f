package server

import (
	"slices"
	"testing"
)

// The live panel's ring keeps the last 10 seconds, oldest first, as
// differences of the counters' totals.
func TestLiveRingKeepsTheLastTenSeconds(t *testing.T) {
	var l liveState
	l.prevIn, l.prevOut = 100, 7 // the totals when the sampler started
	if ev := l.events(); len(ev.In) != 0 || len(ev.Out) != 0 {
		t.Fatalf("empty ring: %+v", ev)
	}
	in, out := uint64(100), uint64(7)
	var wantIn, wantOut []uint64
	for sec := 1; sec <= 13; sec++ {
		in += uint64(sec)
		out += uint64(2 * sec)
		l.push(in, out)
		wantIn, wantOut = append(wantIn, uint64(sec)), append(wantOut, uint64(2*sec))
		if len(wantIn) > liveSlots {
			wantIn, wantOut = wantIn[1:], wantOut[1:]
		}
		if ev := l.events(); !slices.Equal(ev.In, wantIn) || !slices.Equal(ev.Out, wantOut) {
			t.Fatalf("after %d s: %+v, want in %v out %v", sec, ev, wantIn, wantOut)
		}
	}
}
