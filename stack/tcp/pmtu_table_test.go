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
		if tab.learn(addr(i), 1400, false, now) {
			t.Fatalf("entry %d of %d evicted another", i+1, maxPMTUEntries)
		}
		now = now.Add(time.Millisecond)
	}
	if tab.learn(addr(7), 1300, false, now) {
		t.Fatal("a new report for a destination held evicted another")
	}
	if !tab.learn(addr(maxPMTUEntries), 1200, false, now) {
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

// TestPMTUTableNeverRaised: an entry that has not expired is only ever
// lowered (RFC 1191 5, RFC 8201 4), whichever connection to the
// destination the report came through; once it has expired, a new report
// starts afresh.
func TestPMTUTableNeverRaised(t *testing.T) {
	var tab pmtuTable
	var now tcpip.MonotonicTime
	dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	tab.learn(dst, 1280, false, now)
	tab.learn(dst, 1400, false, now.Add(time.Minute))
	if e, ok := tab.lookup(dst, now.Add(time.Minute)); !ok || e.mtu != 1280 {
		t.Errorf("after 1280 then 1400: %d (held %v), want 1280", e.mtu, ok)
	}
	now = now.Add(pmtuExpiry)
	tab.learn(dst, 1400, false, now)
	if e, ok := tab.lookup(dst, now); !ok || e.mtu != 1400 {
		t.Errorf("a report after the entry expired: %d (held %v), want 1400", e.mtu, ok)
	}
}

// TestPMTUTableLocks: an entry learned locked (a hop below min_pmtu)
// sends its destination's packets without DF until it expires, and
// another destination's with DF; once every lock has expired the table
// forgets the locked entries and anyLocked goes off, so that writePacket
// no longer asks.
func TestPMTUTableLocks(t *testing.T) {
	var tab pmtuTable
	var now tcpip.MonotonicTime
	locked, other := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	if tab.anyLocked.Load() {
		t.Fatal("an empty table locks")
	}
	tab.learn(other, 1280, false, now)
	tab.learn(locked, 552, true, now)
	if !tab.anyLocked.Load() || !tab.locks(locked, now) || tab.locks(other, now) {
		t.Errorf("anyLocked %v, locks(locked) %v, locks(other) %v; want true, true, false",
			tab.anyLocked.Load(), tab.locks(locked, now), tab.locks(other, now))
	}
	now = now.Add(pmtuExpiry)
	if tab.locks(locked, now) || tab.anyLocked.Load() {
		t.Errorf("after the entry expired: locks %v, anyLocked %v; want false, false", tab.locks(locked, now), tab.anyLocked.Load())
	}
	if _, held := tab.m[locked]; held {
		t.Error("the expired locked entry is still held")
	}
}
