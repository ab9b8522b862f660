package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
)

// LoopbackNIC is the id of the loopback interface every stack has, like
// Linux's lo: 127.0.0.1/8 and ::1/128 work without any other interface.
// It is far above the ids AddNIC hands out (1, 2, ...), so the first
// interface a user adds is still NIC 1.
const LoopbackNIC tcpip.NICID = 1<<31 - 1

// Loopback addresses: RFC 1122 3.2.1.3 (g) reserves 127/8 for the host
// itself, RFC 4291 2.5.3 names ::1.
var (
	loopback4 = netip.MustParsePrefix("127.0.0.1/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// addLoopback attaches the loopback interface. gVisor's loopback link
// hands every frame written to it back to the stack, on the writer's
// goroutine, as a local route does.
func (s *Stack) addLoopback() {
	if err := s.s.CreateNIC(LoopbackNIC, loopback.New()); err != nil {
		// A new stack has no interface yet: this cannot happen.
		panic("stack: create loopback NIC: " + err.String())
	}
	for _, p := range []netip.Prefix{loopback4, loopback6} {
		if err := s.AddAddress(LoopbackNIC, p); err != nil {
			panic(err.Error())
		}
	}
}
