package interop

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	gtcp "gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/internal/gvpeer"
)

// frameLog is link middleware that remembers the last frames a stack
// sent and received, summarized as tcpdump would, so a failed test can
// tell a frame that was never sent from one that was sent and lost: it
// sits between a stack and the fault middleware, so it sees what the stack
// wrote before the faults and what reached the stack after them.
type frameLog struct {
	nested.Endpoint
	name string

	mu   sync.Mutex
	ring []string
	next int
	n    uint64
}

func newFrameLog(inner gstack.LinkEndpoint, name string, size int) *frameLog {
	l := &frameLog{name: name, ring: make([]string, size)}
	l.Endpoint.Init(inner, l)
	return l
}

func (l *frameLog) add(dir string, pkt *gstack.PacketBuffer) {
	v := pkt.ToView()
	s := summarizeFrame(v.AsSlice())
	v.Release()
	l.mu.Lock()
	l.n++
	l.ring[l.next] = fmt.Sprintf("%s #%d %s %s", time.Now().Format("15:04:05.000000"), l.n, dir, s)
	l.next = (l.next + 1) % len(l.ring)
	l.mu.Unlock()
}

func (l *frameLog) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		l.add("out", pkt)
	}
	return l.Endpoint.WritePackets(pkts)
}

func (l *frameLog) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	l.add("in ", pkt)
	l.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// dump logs the remembered frames, oldest first.
func (l *frameLog) dump(t testing.TB) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b []byte
	for i := range l.ring {
		if s := l.ring[(l.next+i)%len(l.ring)]; s != "" {
			b = append(b, "\n    "+s...)
		}
	}
	t.Logf("frames of %s (last %d of %d):%s", l.name, len(l.ring), l.n, b)
}

// summarizeFrame says what an Ethernet frame carries: ARP, or the TCP
// segment's flags, sequence numbers and length.
func summarizeFrame(b []byte) string {
	h, other := frameTCP(b)
	if h == nil {
		return other
	}
	var sack string
	if opts := header.ParseTCPOptions(h.Options()); len(opts.SACKBlocks) > 0 {
		sack = fmt.Sprintf(" sack %v", opts.SACKBlocks)
	}
	return fmt.Sprintf("%d > %d [%s] seq %d ack %d win %d len %d%s", h.SourcePort(), h.DestinationPort(), h.Flags(), h.SequenceNumber(), h.AckNumber(), h.WindowSize(), len(h)-int(h.DataOffset()), sack)
}

// frameTCP returns the TCP segment an Ethernet frame carries over IPv4
// or IPv6, with a valid data offset; or nil and what the frame is
// instead.
func frameTCP(b []byte) (header.TCP, string) {
	if len(b) < header.EthernetMinimumSize {
		return nil, fmt.Sprintf("runt (%d bytes)", len(b))
	}
	eth := header.Ethernet(b)
	p := b[header.EthernetMinimumSize:]
	var tcp []byte
	switch eth.Type() {
	case header.ARPProtocolNumber:
		return nil, fmt.Sprintf("ARP %d bytes", len(p))
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(p)
		if !ip.IsValid(len(p)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return nil, fmt.Sprintf("IPv4 proto %d, %d bytes", ip.TransportProtocol(), len(p))
		}
		tcp = ip.Payload()
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(p)
		if !ip.IsValid(len(p)) || ip.NextHeader() != uint8(header.TCPProtocolNumber) { // no extension headers in these tests
			return nil, fmt.Sprintf("IPv6, %d bytes", len(p))
		}
		tcp = ip.Payload()
	default:
		return nil, fmt.Sprintf("ethertype %#x", eth.Type())
	}
	if len(tcp) < header.TCPMinimumSize {
		return nil, "short TCP"
	}
	h := header.TCP(tcp)
	if off := int(h.DataOffset()); off < header.TCPMinimumSize || off > len(tcp) {
		return nil, "bad TCP offset"
	}
	return h, ""
}

// dumpPeer logs what gVisor's TCP knows: its counters and, per endpoint,
// its state and sender's view (what a test that waits on gVisor needs to
// tell "never sent" from "sent and lost").
func dumpPeer(t testing.TB, p *gvpeer.Peer) {
	st := p.S.Stats().TCP
	t.Logf("gVisor TCP: segments sent %d, retransmits %d, timeouts %d, fast retransmits %d, slow-start retransmits %d, invalid segments %d, checksum errors %d",
		st.SegmentsSent.Value(), st.Retransmits.Value(), st.Timeouts.Value(), st.FastRetransmit.Value(),
		st.SlowStartRetransmits.Value(), st.InvalidSegmentsReceived.Value(), st.ChecksumErrors.Value())
	for _, ep := range p.S.RegisteredEndpoints() {
		e, ok := ep.(*gtcp.Endpoint)
		if !ok {
			continue
		}
		var info tcpip.TCPInfoOption
		if err := e.GetSockOpt(&info); err != nil {
			t.Logf("gVisor endpoint %+v: TCP_INFO: %v", e.Info(), err)
			continue
		}
		t.Logf("gVisor endpoint %v: state %v, %+v", e.Info().(*gstack.TransportEndpointInfo).ID, gtcp.EndpointState(e.State()), info)
	}
}
