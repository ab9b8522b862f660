// Package gvpeer builds the independent peer tapstack is tested and
// benchmarked against: a gVisor stack running gVisor's own TCP
// (transport/tcp). It is used only by tests, benchmarks and demos; a
// tapstack stack never runs gVisor's TCP.
package gvpeer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Peer is a gVisor stack with gVisor's TCP on one NIC.
type Peer struct {
	S     *stack.Stack
	Addr  netip.Addr
	link  stack.LinkEndpoint
	watch *watch // NewWatched's
}

// New makes a gVisor-TCP stack on link with address addr (with prefix).
func New(link stack.LinkEndpoint, addr netip.Prefix, clock tcpip.Clock) (*Peer, error) {
	p, err := newWith(link, addr, clock, tcp.NewProtocol)
	if err != nil {
		return nil, err
	}
	p.link = link
	return p, nil
}

// NewWatched is New with every connection's sender watched: gVisor's TCP
// probe (called on each segment it receives) records how much each has
// in flight, for Unacked. The probe costs a copy of the endpoint's state
// per segment, so benchmarks use New.
func NewWatched(link stack.LinkEndpoint, addr netip.Prefix, clock tcpip.Clock) (*Peer, error) {
	w := &watch{inFlight: map[tcp.TCPEndpointID]int{}}
	p, err := newWith(link, addr, clock, tcp.NewProtocolProbe(w.probe))
	if err != nil {
		return nil, err
	}
	p.link, p.watch = link, w
	return p, nil
}

// watch keeps, per connection, the sequence space it has sent that its
// peer has not acknowledged, as of the last segment it received.
type watch struct {
	mu       sync.Mutex
	inFlight map[tcp.TCPEndpointID]int
}

func (w *watch) probe(st *tcp.TCPEndpointState) {
	w.mu.Lock()
	w.inFlight[st.ID] = int(st.Sender.SndUna.Size(st.Sender.SndNxt))
	w.mu.Unlock()
}

// Unacked returns how much sequence space c, a connection of a peer made
// by NewWatched, has sent and not seen acknowledged, as of the last
// segment it received, or -1 if that is not known.
func (p *Peer) Unacked(c net.Conn) int {
	local, lok := c.LocalAddr().(*net.TCPAddr)
	remote, rok := c.RemoteAddr().(*net.TCPAddr)
	if p.watch == nil || !lok || !rok {
		return -1
	}
	la, _ := netip.AddrFromSlice(local.IP)
	ra, _ := netip.AddrFromSlice(remote.IP)
	id := tcp.TCPEndpointID{
		LocalPort: uint16(local.Port), LocalAddress: tcpip.AddrFromSlice(la.Unmap().AsSlice()),
		RemotePort: uint16(remote.Port), RemoteAddress: tcpip.AddrFromSlice(ra.Unmap().AsSlice()),
	}
	p.watch.mu.Lock()
	defer p.watch.mu.Unlock()
	n, ok := p.watch.inFlight[id]
	if !ok {
		return -1
	}
	return n
}

// enableSACK turns on gVisor's SACK (RFC 2018), off by its default, as the
// users of gVisor's netstack do (wireguard-go's tun/netstack, Tailscale)
// and as Linux has it: the peer tapstack is measured against is gVisor as
// it is deployed. It matters beyond speed: without SACK, gVisor's RACK has
// nothing to work with, and a FIN-WAIT-1 or CLOSING endpoint whose last
// data segment was lost (its FIN arrived) sent its tail loss probe and
// then never armed its retransmission timer: no timeout in 25 s, the
// data never sent again (stack/interop TestGVisorFaults, seen in CI).
func enableSACK(s *stack.Stack) error {
	opt := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		return fmt.Errorf("gvpeer: enable SACK: %s", err)
	}
	return nil
}

// defaultSubnet is the default route's destination (0.0.0.0/0 or ::/0) for
// a's address family.
func defaultSubnet(a netip.Addr) tcpip.Subnet {
	n := 4
	if a.Is6() {
		n = 16
	}
	sn, _ := tcpip.NewSubnet(tcpip.AddrFromSlice(make([]byte, n)), tcpip.MaskFromBytes(make([]byte, n)))
	return sn
}

func (p *Peer) proto() tcpip.NetworkProtocolNumber {
	if p.Addr.Is6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// Listen listens with gVisor's TCP on port, with SO_REUSEADDR set as Go's
// net.Listen sets it: a server listening again on its port while
// connections of its last listener are still closing (TIME-WAIT, or
// FIN-WAIT in gVisor's own goroutines) binds at once, as it would on
// Linux, instead of failing with "port is in use" (gonet.ListenTCP sets
// no option).
func (p *Peer) Listen(port uint16) (net.Listener, error) {
	addr := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(p.Addr.AsSlice()), Port: port}
	var wq waiter.Queue
	ep, terr := p.S.NewEndpoint(tcp.ProtocolNumber, p.proto(), &wq)
	if terr != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: errors.New(terr.String())}
	}
	ep.SocketOptions().SetReuseAddress(true)
	fail := func(op string, terr tcpip.Error) error {
		ep.Close()
		return &net.OpError{Op: op, Net: "tcp", Addr: &net.TCPAddr{IP: p.Addr.AsSlice(), Port: int(port)}, Err: errors.New(terr.String())}
	}
	if terr := ep.Bind(addr); terr != nil {
		return nil, fail("bind", terr)
	}
	if terr := ep.Listen(listenBacklog); terr != nil {
		return nil, fail("listen", terr)
	}
	return gonet.NewTCPListener(p.S, &wq, ep), nil
}

// listenBacklog is the backlog Listen asks for, gonet.ListenTCP's.
const listenBacklog = 4096

// Dial connects with gVisor's TCP to addr.
func (p *Peer) Dial(addr netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialTCP(p.S, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(addr.Addr().AsSlice()), Port: addr.Port()}, p.proto())
}

// Close shuts the stack down.
//
// The NICs are removed first: gVisor's Stack.Wait waits for each link
// endpoint while holding the stack's lock, and a link goroutine delivering
// a frame into the stack at that moment needs the lock too.
func (p *Peer) Close() {
	for id := range p.S.NICInfo() {
		_ = p.S.RemoveNIC(id)
	}
	if p.link != nil {
		p.link.Wait()
	}
	p.S.Close()
	p.S.Wait()
}
