package tcp

import (
	"math/rand/v2"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func cookieID(remotePort uint16) stack.TransportEndpointID {
	return stack.TransportEndpointID{
		LocalAddress:  tcpip.AddrFrom4([4]byte{192, 0, 2, 1}),
		LocalPort:     80,
		RemoteAddress: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}),
		RemotePort:    remotePort,
	}
}

// TestCookieRoundTrip: every MSS index survives make and check, at age 0
// and 1 of the 64 s counter, including across the wrap of its 8 bits; age
// 2 is refused (Linux MAX_SYNCOOKIE_AGE).
func TestCookieRoundTrip(t *testing.T) {
	k := newCookieKey([16]byte{1, 2, 3})
	id := cookieID(40000)
	for _, count := range []uint32{0, 1, 254, 255, 256, 1 << 30} {
		for idx := range uint32(len(cookieMSS)) {
			sseq := seqnum.Value(rand.Uint32())
			c := k.make(id, sseq, idx, count)
			for age := uint32(0); age < 4; age++ {
				got, bad := k.check(id, sseq, c, count+age)
				switch {
				case age < cookieMaxAge && (bad != "" || got != idx):
					t.Errorf("count %d idx %d age %d: check = %d, %q; want %d", count, idx, age, got, bad, idx)
				case age >= cookieMaxAge && bad == "":
					t.Errorf("count %d idx %d age %d: accepted", count, idx, age)
				}
			}
		}
	}
}

// TestCookieBindsEverything: a cookie is good only for its own 4-tuple,
// SYN sequence number and secret, and its MAC covers the MSS index, so
// cookie+k does not verify as another index (TestCookieAckBeyondCookie).
func TestCookieBindsEverything(t *testing.T) {
	k := newCookieKey([16]byte{1})
	id := cookieID(40000)
	c := k.make(id, 1000, 3, 7)
	if _, bad := k.check(id, 1000, c, 7); bad != "" {
		t.Fatalf("own cookie rejected: %s", bad)
	}
	other := k
	other[0] ^= 1
	for name, ok := range map[string]bool{
		"other port":   k.checkOK(cookieID(40001), 1000, c, 7),
		"sseq+1":       k.checkOK(id, 1001, c, 7),
		"sseq-1":       k.checkOK(id, 999, c, 7),
		"cookie+1":     k.checkOK(id, 1000, c+1, 7),
		"cookie+2":     k.checkOK(id, 1000, c+2, 7),
		"other secret": other.checkOK(id, 1000, c, 7),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func (k *cookieKey) checkOK(id stack.TransportEndpointID, sseq, c seqnum.Value, count uint32) bool {
	_, bad := k.check(id, sseq, c, count)
	return bad == ""
}

// TestCookieForgery: random guesses at the ACK number verify with
// probability about (2/256)*(4/2^24), about 2e-9: none of 200,000 should.
func TestCookieForgery(t *testing.T) {
	k := newCookieKey([16]byte{9})
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		id := cookieID(uint16(i))
		if k.checkOK(id, seqnum.Value(r.Uint32()), seqnum.Value(r.Uint32()), 5) {
			t.Fatalf("guess %d verified", i)
		}
	}
}

// TestCookieMSSIndex: the peer's MSS rounds down to Linux's table.
func TestCookieMSSIndex(t *testing.T) {
	for _, tc := range []struct{ mss, want uint16 }{
		{0, 536}, {100, 536}, {536, 536}, {1299, 536}, {1300, 1300},
		{1400, 1300}, {1440, 1440}, {1459, 1440}, {1460, 1460}, {9000, 1460},
	} {
		if got := cookieMSS[cookieMSSIndex(&cookieMSS, tc.mss)]; got != tc.want {
			t.Errorf("MSS %d -> %d, want %d", tc.mss, got, tc.want)
		}
	}
}

// TestCookieNoAlloc: making and checking a cookie allocate nothing, which
// matters under a flood.
func TestCookieNoAlloc(t *testing.T) {
	k := newCookieKey([16]byte{})
	id := cookieID(1)
	if n := testing.AllocsPerRun(100, func() {
		c := k.make(id, 1, 2, 3)
		k.check(id, 1, c, 3)
	}); n > 0 {
		t.Errorf("%v allocations per cookie", n)
	}
}

// TestCookieTimestamp: the peer's window scale (or its absence) survives
// the low bits of the cookie TSval (Linux cookie_init_timestamp), which is
// never ahead of the clock, for any clock value; echoes altered or too old
// are refused.
func TestCookieTimestamp(t *testing.T) {
	for _, now := range []uint32{0, 1, 63, 64, 1000, 1<<32 - 1, 1<<31 + 5} {
		for ws := -1; ws <= 14; ws++ {
			ts := cookieTimestamp(now, ws)
			if tsBefore(now, ts) || now-ts >= 1<<cookieTSBits {
				t.Errorf("now %d ws %d: ts %d not in (now-64, now]", now, ws, ts)
			}
			got, bad := cookieTSDecode(ts, now+1000)
			if bad != "" || got != ws {
				t.Errorf("now %d ws %d: decoded %d, %q", now, ws, got, bad)
			}
			if _, bad := cookieTSDecode(ts|cookieTSSACK, now); bad == "" {
				t.Errorf("now %d ws %d: SACK bit accepted", now, ws)
			}
			if _, bad := cookieTSDecode(ts, now+uint32((cookieMaxAge*cookiePeriod+time.Second).Milliseconds())); bad == "" {
				t.Errorf("now %d ws %d: stale echo accepted", now, ws)
			}
			if _, bad := cookieTSDecode(ts, ts-1); bad == "" {
				t.Errorf("now %d ws %d: echo from the future accepted", now, ws)
			}
		}
	}
}
