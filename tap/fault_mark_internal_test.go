package tap

import (
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestSetCEChecksum: the IPv4 header checksum setCE updates for the
// changed word (RFC 1624 3) is the one computed anew over the marked
// header, for any header whose checksum held; and for one whose checksum
// did not hold it still does not.
func TestSetCEChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 100000 {
		ip := make([]byte, header.IPv4MinimumSize)
		for j := range ip {
			ip[j] = byte(r.Uint32())
		}
		ip[0] = 0x45
		ip[1] = ip[1]&^0b11 | byte(1+r.IntN(2)) // ECT(1) or ECT(0)
		h := header.IPv4(ip)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		bad := i%10 == 0
		if bad {
			h.SetChecksum(h.Checksum() + uint16(1+r.IntN(0xfffe)))
		}
		want := append([]byte(nil), ip...)
		want[1] |= ecnCE
		header.IPv4(want).SetChecksum(0)
		header.IPv4(want).SetChecksum(^header.IPv4(want).CalculateChecksum())
		setCE(ip, header.IPv4ProtocolNumber)
		if ip[1]&0b11 != ecnCE {
			t.Fatalf("%x: not marked", ip)
		}
		if h.IsChecksumValid() == bad || (!bad && h.Checksum() != header.IPv4(want).Checksum()) {
			t.Fatalf("%x: checksum %#04x (valid %v), want %#04x (header's checksum held before: %v)", ip, h.Checksum(), h.IsChecksumValid(), header.IPv4(want).Checksum(), !bad)
		}
	}
}
