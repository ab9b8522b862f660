package stack

import (
	"net/netip"
	"strconv"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tapstack/tapstack/event"
)

// UDP datagrams in the event stream. gVisor's transport/udp carries them
// and is not ours to change, so the stack watches it from both sides:
//
//   - Inbound, the IP endpoints hand every datagram to UDP through a
//     TransportDispatcher; the stack gives them one of its own
//     (udpDispatcher, udp_wrap.go) whose hook (deliver) passes the
//     datagram on and reads gVisor's UDP counters before and after.
//     Deliveries of UDP are serialized per stack while it does, so the
//     change of the counters is that one datagram's: delivered to a
//     socket, refused by a full receive buffer, failed its checksum, or
//     found no socket (the dispatcher's answer, after which IP sends ICMP
//     port unreachable, RFC 1122 4.1.3.1). Every datagram that reaches
//     UDP passes here, whether it came from a link, the loopback
//     interface or a local route, and after IP reassembly.
//   - Outbound, every UDP socket is made by the protocol, which the stack
//     wraps (udpProtocol, udp_wrap.go): a successful Write on a socket is a
//     datagram sent (sent).
//
// The serialization holds no lock of gVisor's and nothing in a delivery
// waits on another delivery; only a protocol handler installed on the
// netstack (SetTransportProtocolHandler) that answers a datagram to the
// stack's own address from within the delivery would wait on itself.
//
// Both report to the stack's observer (Options.TCP.Observer), after any
// lock of the stack's is released, on the goroutine that delivered or
// wrote the datagram. A send is reported once Write has returned, since
// only then is it known to have left: a datagram to the stack itself,
// which a local route delivers within Write, is reported delivered
// before it is reported sent; and a delivery is reported once the socket
// has the datagram, so a reader may have it just before. With no observer
// the wrapper calls neither hook.

// udpObserver reports a stack's UDP datagrams as events.
type udpObserver struct {
	obs   event.Observer
	clock tcpip.Clock
	stats tcpip.UDPStats // gVisor's counters, set once its stack exists

	// mu serializes UDP deliveries, so that the counters' change across
	// one is that datagram's alone.
	mu sync.Mutex
}

// newUDPObserver returns nil when there is no observer: then the
// wrapper reports nothing.
func newUDPObserver(obs event.Observer, clock tcpip.Clock) *udpObserver {
	if obs == nil {
		return nil
	}
	return &udpObserver{obs: obs, clock: clock}
}

// attach reads the counters of the gVisor stack the factories built.
func (o *udpObserver) attach(s *gstack.Stack) {
	if o != nil {
		o.stats = s.Stats().UDP
	}
}

// deliver passes a UDP datagram on to the NIC's dispatcher next and
// reports what became of it: udpDispatcher's hook for every inbound
// datagram.
func (o *udpObserver) deliver(next gstack.TransportDispatcher, pkt *gstack.PacketBuffer) gstack.TransportPacketDisposition {
	ev := datagramIn(pkt)
	o.mu.Lock()
	before := o.counts()
	res := next.DeliverTransportPacket(udp.ProtocolNumber, pkt)
	after := o.counts()
	o.mu.Unlock()
	if outcome(&ev, res, after.sub(before), pkt) {
		ev.Time = o.clock.Now()
		o.obs(ev)
	}
	return res
}

// udpCounts are the gVisor counters a delivery may move.
type udpCounts struct {
	atSocket, rcvbuf, malformed, checksum uint64
}

func (o *udpObserver) counts() udpCounts {
	u := o.stats
	return udpCounts{
		atSocket:  u.PacketsReceived.Value(),
		rcvbuf:    u.ReceiveBufferErrors.Value(),
		malformed: u.MalformedPacketsReceived.Value(),
		checksum:  u.ChecksumErrors.Value(),
	}
}

func (c udpCounts) sub(b udpCounts) udpCounts {
	return udpCounts{
		atSocket:  c.atSocket - b.atSocket,
		rcvbuf:    c.rcvbuf - b.rcvbuf,
		malformed: c.malformed - b.malformed,
		checksum:  c.checksum - b.checksum,
	}
}

// datagramIn names an inbound datagram from the stack's viewpoint: its
// destination is Local. IP has parsed the UDP header into the packet's
// transport header before it dispatches.
func datagramIn(pkt *gstack.PacketBuffer) event.Event {
	ev := event.Event{}
	src, dst := ipAddrs(pkt)
	th := pkt.TransportHeader().Slice()
	if len(th) < header.UDPMinimumSize {
		// IP parses the header before it dispatches; were it missing,
		// the datagram would be malformed whatever became of it.
		ev.Conn = event.ConnID{Local: netip.AddrPortFrom(dst, 0), Remote: netip.AddrPortFrom(src, 0)}
		ev.Key.Len = pkt.Data().Size()
		ev.Kind, ev.Drop = event.KindUDPDrop, event.DropMalformed
		return ev
	}
	u := header.UDP(th)
	ev.Conn = event.ConnID{Local: netip.AddrPortFrom(dst, u.DestinationPort()), Remote: netip.AddrPortFrom(src, u.SourcePort())}
	ev.Key.Len = pkt.Data().Size()
	if l := int(u.Length()); l >= header.UDPMinimumSize && l-header.UDPMinimumSize <= ev.Key.Len {
		ev.Key.Len = l - header.UDPMinimumSize // the rest is IP padding
	}
	return ev
}

// ipAddrs returns a packet's source and destination addresses.
func ipAddrs(pkt *gstack.PacketBuffer) (src, dst netip.Addr) {
	nh := pkt.NetworkHeader().Slice()
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) >= header.IPv4MinimumSize {
			h := header.IPv4(nh)
			return netip.AddrFrom4(h.SourceAddress().As4()), netip.AddrFrom4(h.DestinationAddress().As4())
		}
	case header.IPv6ProtocolNumber:
		if len(nh) >= header.IPv6MinimumSize {
			h := header.IPv6(nh)
			return netip.AddrFrom16(h.SourceAddress().As16()), netip.AddrFrom16(h.DestinationAddress().As16())
		}
	}
	return netip.Addr{}, netip.Addr{}
}

// outcome sets ev's kind from the dispatcher's answer and the counters'
// change d across the delivery; it reports whether there is anything to
// report. gVisor counts PacketsReceived for each
// socket the datagram reached (more than one for broadcast and
// multicast), before its buffer check; ReceiveBufferErrors for each that
// refused it (full, or shut for reading: Linux's RcvbufErrors counts
// both).
func outcome(ev *event.Event, res gstack.TransportPacketDisposition, d udpCounts, pkt *gstack.PacketBuffer) bool {
	delivered := d.atSocket - min(d.atSocket, d.rcvbuf)
	switch {
	case ev.Kind == event.KindUDPDrop:
		// Malformed before any socket saw it (datagramIn).
	case d.checksum > 0:
		// At a socket, or for no port (gVisor's UDP validates a
		// datagram before it would answer it): not answered.
		ev.Kind, ev.Drop = event.KindUDPDrop, event.DropBadChecksum
	case d.malformed > 0:
		ev.Kind, ev.Drop = event.KindUDPDrop, event.DropMalformed
	case res == gstack.TransportPacketDestinationPortUnreachable:
		ev.Kind = event.KindUDPNoPort
		ev.Note = portUnreachableAnswer(ev, pkt)
	case delivered > 0:
		ev.Kind = event.KindUDPDeliver
		if d.atSocket > 1 {
			ev.Note = "to " + strconv.FormatUint(delivered, 10) + " of " + strconv.FormatUint(d.atSocket, 10) + " sockets"
		}
	case d.rcvbuf > 0:
		ev.Kind, ev.Drop = event.KindUDPDrop, event.DropBufferFull
	default:
		// No socket took it, yet something did: a handler set with
		// the netstack's SetTransportProtocolHandler (a forwarder).
		ev.Kind = event.KindUDPDeliver
		ev.Note = "to the netstack's protocol handler"
	}
	return ev.Kind != 0
}

// portUnreachableAnswer says whether IP answers a datagram no socket took
// with ICMP port unreachable: not for a datagram to a broadcast or
// multicast address, nor from an unspecified source (RFC 1122 3.2.2,
// RFC 4443 2.4 (e)), as gVisor's IP decides after the dispatcher returns.
// gVisor's ICMP rate limit may still suppress the answer; the capture
// shows whether it left.
func portUnreachableAnswer(ev *event.Event, pkt *gstack.PacketBuffer) string {
	dst, src := ev.Conn.Local.Addr(), ev.Conn.Remote.Addr()
	switch {
	case pkt.NetworkPacketInfo.LocalAddressBroadcast || dst.IsMulticast():
		return "not answered (broadcast or multicast destination)"
	case !src.IsValid() || src.IsUnspecified():
		return "not answered (unspecified source)"
	}
	return "answered ICMP port unreachable"
}

// sent reports a datagram of n bytes ep sent to to, or to its peer:
// udpEndpoint's hook for every successful Write.
func (o *udpObserver) sent(ep tcpip.Endpoint, to *tcpip.FullAddress, n int) {
	var remote tcpip.FullAddress
	if to != nil {
		remote = *to
	} else if ra, err := ep.GetRemoteAddress(); err == nil {
		remote = ra
	}
	local, _ := ep.GetLocalAddress()
	r := fullAddrPort(remote, netip.Addr{})
	l := fullAddrPort(local, r.Addr())
	o.obs(event.Event{Time: o.clock.Now(), Kind: event.KindUDPSend, Conn: event.ConnID{Local: l, Remote: r}, Key: event.SegKey{Len: n}})
}

// fullAddrPort converts a gVisor address; an IPv4-mapped address is
// unmapped, and no address at all is the unspecified one of peer's
// family (a socket bound to no address: IP picks the source per
// datagram).
func fullAddrPort(fa tcpip.FullAddress, peer netip.Addr) netip.AddrPort {
	a, ok := netip.AddrFromSlice(fa.Addr.AsSlice())
	switch {
	case ok:
		a = a.Unmap()
	case peer.Is4():
		a = netip.IPv4Unspecified()
	default:
		a = netip.IPv6Unspecified()
	}
	return netip.AddrPortFrom(a, fa.Port)
}
