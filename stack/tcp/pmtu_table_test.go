package tcp

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// TestPMTUTableBounded: the path MTU table holds at most maxPMTUEntries
// destinations; a new one beyond that forgets the entry closest to
// expiring (and says so, for LimitStats.PathMTUEvictions), while a report
// for a destination already held evicts nothing.
func TestPMTUTableBounded(t *testing.T) {
	var tab pmtuTable
	var now tcpip.MonotonicTime
	addr := func(i int) tcpip.Address {
		return tcpip.AddrFrom4(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).As4())
	}
	for i := range maxPMTUEntries {
		if tab.learn(addr(i), 1400, now) {
			t.Fatalf("entry %d of %d evicted another", i+1, maxPMTUEntries)
		}
		now = now.Add(time.Millisecond)
	}
	if tab.learn(addr(7), 1300, now) {
		t.Fatal("a new report for a destination held evicted another")
	}
	if !tab.learn(addr(maxPMTUEntries), 1200, now) {
		t.Fatal("a new destination with the table full evicted nothing")
	}
	if n := len(tab.m); n != maxPMTUEntries {
		t.Fatalf("table holds %d entries, want %d", n, maxPMTUEntries)
	}
	if _, ok := tab.lookup(addr(0), now); ok {
		t.Error("the entry closest to expiring (the first learned) is still held")
	}
	for _, i := range []int{1, 7, maxPMTUEntries} {
		if _, ok := tab.lookup(addr(i), now); !ok {
			t.Errorf("entry %d was forgotten", i)
		}
	}
}
