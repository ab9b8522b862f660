package tap_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tapstack/tapstack/tap"
)

func TestPipeEndpoints(t *testing.T) {
	a, b := tap.Pipe()
	if a.MTU() != 1500 || b.MTU() != 1500 {
		t.Errorf("MTU = %d, %d; want 1500", a.MTU(), b.MTU())
	}
	if a.LinkAddress() == b.LinkAddress() {
		t.Errorf("both ends have MAC %v", a.LinkAddress())
	}
	for _, e := range []*tap.PipeEnd{a, b} {
		mac := []byte(e.LinkAddress())
		if len(mac) != 6 || mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Errorf("MAC %v is not a locally administered unicast address", e.LinkAddress())
		}
		if e.ARPHardwareType() != header.ARPHardwareEther {
			t.Errorf("ARPHardwareType = %v, want Ether", e.ARPHardwareType())
		}
		if e.Capabilities()&stack.CapabilityResolutionRequired == 0 {
			t.Errorf("Capabilities %v lack ResolutionRequired", e.Capabilities())
		}
		if got := e.MaxHeaderLength(); got != header.EthernetMinimumSize {
			t.Errorf("MaxHeaderLength = %d, want %d", got, header.EthernetMinimumSize)
		}
	}
	c, _ := tap.Pipe(tap.WithPipeMTU(9000))
	if c.MTU() != 9000 {
		t.Errorf("WithPipeMTU(9000): MTU = %d", c.MTU())
	}
	a.Close()
	b.Close()
	c.Close()
}

func frame(n int) stack.PacketBufferList {
	var l stack.PacketBufferList
	for range n {
		l.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, 60))}))
	}
	return l
}

func TestPipeQueueFullDrops(t *testing.T) {
	check := goroutineBaseline(t)
	// Not attached yet, so no pump drains the queue: the first frame fits
	// and the rest are dropped without blocking.
	a, b := tap.Pipe(tap.WithPipeQueue(1))
	pkts := frame(3)
	n, err := a.WritePackets(pkts)
	pkts.DecRef()
	if _, full := err.(*tcpip.ErrNoBufferSpace); !full || n != 1 {
		t.Fatalf("WritePackets = %d, %v; want 1, %v", n, err, &tcpip.ErrNoBufferSpace{})
	}
	if got := a.Stats().DroppedQueueFull; got != 2 {
		t.Errorf("DroppedQueueFull = %d, want 2", got)
	}
	a.Close()
	b.Close()
	a.Wait()
	b.Wait()
	// After the cable is down, writes are dropped and counted.
	pkts = frame(1)
	if _, err := a.WritePackets(pkts); err != nil {
		t.Errorf("write after close: %v", err)
	}
	pkts.DecRef()
	if got := a.Stats().DroppedClosed; got != 1 {
		t.Errorf("DroppedClosed = %d, want 1", got)
	}
	check()
}

// TestPipeOutboundRoom: an end's outbound queue says how many more frames
// it takes before it is busy (stack.QueueingLink, TCP small queues): 256
// less those waiting; frames the queue refused do not count.
func TestPipeOutboundRoom(t *testing.T) {
	check := goroutineBaseline(t)
	// Not attached yet, so no pump drains the queue.
	a, b := tap.Pipe(tap.WithPipeQueue(300))
	if got := a.OutboundRoom(); got != 256 {
		t.Errorf("empty: room %d, want 256", got)
	}
	pkts := frame(200)
	a.WritePackets(pkts)
	pkts.DecRef()
	if got := a.OutboundRoom(); got != 56 {
		t.Errorf("200 waiting: room %d, want 56", got)
	}
	pkts = frame(150)
	n, _ := a.WritePackets(pkts)
	pkts.DecRef()
	if got := a.OutboundRoom(); n != 100 || got != -44 {
		t.Errorf("150 more, %d taken: room %d, want 100 taken and -44", n, got)
	}
	a.Close()
	b.Close()
	a.Wait()
	b.Wait()
	check()
}

func TestPipePing(t *testing.T) {
	check := goroutineBaseline(t)
	a, b := tap.Pipe()
	sa := newStack(t, a, "192.0.2.1/24")
	sb := newStack(t, b, "192.0.2.2/24")
	ping(t, sa, "192.0.2.2", 5*time.Second)
	ping(t, sb, "192.0.2.1", 5*time.Second)
	sa.Destroy()
	sb.Destroy()
	if st := a.Stats(); st.Sent == 0 {
		t.Errorf("a sent nothing: %+v", st)
	}
	check()
}

func TestPipeTCP(t *testing.T) {
	check := goroutineBaseline(t)
	a, b := tap.Pipe()
	sa := newStack(t, a, "192.0.2.1/24")
	sb := newStack(t, b, "192.0.2.2/24")
	transfer(t, sa, sb, "192.0.2.2", 1<<20, 30*time.Second)
	sa.Destroy()
	sb.Destroy()
	t.Logf("a: %+v", a.Stats())
	t.Logf("b: %+v", b.Stats())
	check()
}

// TestPipeRemoveNIC checks that removing one NIC shuts the cable down and
// stops the pumps, with the other stack still running.
func TestPipeRemoveNIC(t *testing.T) {
	check := goroutineBaseline(t)
	a, b := tap.Pipe()
	sa := newStack(t, a, "192.0.2.1/24")
	sb := newStack(t, b, "192.0.2.2/24")
	ping(t, sa, "192.0.2.2", 5*time.Second)
	if err := sa.RemoveNIC(1); err != nil {
		t.Fatalf("RemoveNIC: %v", err)
	}
	a.Wait()
	b.Wait()
	sa.Destroy()
	sb.Destroy()
	check()
}

func TestPipeFaultyTCP(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  tap.FaultConfig
	}{
		{"loss", tap.FaultConfig{Loss: 0.05}},
		{"all", tap.FaultConfig{Loss: 0.02, Duplicate: 0.02, Reorder: 0.02, Corrupt: 0.02}},
		{"delay", tap.FaultConfig{Loss: 0.01, Delay: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := goroutineBaseline(t)
			a, b := tap.Pipe()
			ca, cb := tc.cfg, tc.cfg
			ca.Source = rand.NewPCG(1, 1)
			cb.Source = rand.NewPCG(2, 2)
			fa, fb := tap.NewFault(a, ca), tap.NewFault(b, cb)
			sa := newStack(t, fa, "192.0.2.1/24")
			sb := newStack(t, fb, "192.0.2.2/24")
			transfer(t, sa, sb, "192.0.2.2", 1<<20, 60*time.Second)
			sa.Destroy()
			sb.Destroy()
			t.Logf("a: %+v", fa.Stats())
			t.Logf("b: %+v", fb.Stats())
			if tc.cfg.Loss > 0 && fa.Stats().Lost == 0 {
				t.Errorf("no loss applied: %+v", fa.Stats())
			}
			if tc.cfg.Corrupt > 0 && fa.Stats().Corrupted == 0 {
				t.Errorf("no corruption applied: %+v", fa.Stats())
			}
			check()
		})
	}
}

// pipeRecorder records the packets a pipe's end delivers to its stack.
type pipeRecorder struct {
	mu   sync.Mutex
	pkts [][]byte // network packets: IP header and on
}

func (r *pipeRecorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	r.mu.Lock()
	r.pkts = append(r.pkts, append([]byte(nil), v.AsSlice()[len(pkt.LinkHeader().Slice()):]...))
	r.mu.Unlock()
	v.Release()
}

func (*pipeRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *pipeRecorder) packets() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pkts
}

// tcpSuperFrame is an Ethernet frame from src to dst carrying one IPv4 TCP
// segment of n bytes of payload, every checksum complete.
func tcpSuperFrame(src, dst tcpip.LinkAddress, n int) []byte {
	const hdrs = header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	b := make([]byte, hdrs+n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: header.IPv4ProtocolNumber})
	ipSrc, ipDst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b) - header.EthernetMinimumSize), Flags: header.IPv4FlagDontFragment,
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: ipSrc, DstAddr: ipDst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck, WindowSize: 512})
	for i := range n {
		tcp[header.TCPMinimumSize+i] = byte(i * 7)
	}
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ipSrc, ipDst, uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, x))
	return b
}

// TestPipeSuperFrameCheckedBeforeCut: an end that delivers super-frames
// as their wire segments (a fault middleware above corrupts inbound
// frames, so the stack verifies checksums) computes each segment's
// checksum afresh. A super-frame whose sender made its checksum complete
// and whose bytes changed since is checked whole first, and dropped: cut,
// its segments would all verify.
func TestPipeSuperFrameCheckedBeforeCut(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		a, b := tap.Pipe(tap.WithPipeGSO(true))
		fb := tap.NewFault(b, tap.FaultConfig{Seed: 1, Inbound: &tap.FaultConfig{Corrupt: 1e-12}})
		var rec pipeRecorder
		fb.Attach(&rec)
		frame := tcpSuperFrame(a.LinkAddress(), b.LinkAddress(), 4000)
		if corrupt {
			frame[len(frame)-5] ^= 0x10
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, CsumOffset: header.TCPChecksumOffset, MSS: 1000, L3HdrLen: header.IPv4MinimumSize}
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if n, err := a.WritePackets(l); n != 1 || err != nil {
			t.Fatalf("WritePackets: %d, %v", n, err)
		}
		pkt.DecRef()
		if !a.FlushOutbound(5 * time.Second) {
			t.Fatal("frame not carried")
		}
		// Intact segments reach the stack joined again (rejoin.go):
		// count the payload.
		bytes := 0
		for _, p := range rec.packets() {
			bytes += len(header.TCP(header.IPv4(p).Payload()).Payload())
		}
		wantBytes, wantDrops := 4000, uint64(0)
		if corrupt {
			wantBytes, wantDrops = 0, 1
		}
		if bytes != wantBytes || a.Stats().DroppedBadChecksum != wantDrops {
			t.Errorf("corrupt %v: %d bytes of payload delivered, DroppedBadChecksum %d; want %d, %d",
				corrupt, bytes, a.Stats().DroppedBadChecksum, wantBytes, wantDrops)
		}
		fb.Attach(nil)
		a.Close()
		b.Close()
	}
}

// TestPipeGSOCorruptedFragmentsDropped: an end with GSO vouches for the
// checksums of what it delivers, so its stack checks none, the
// reassembled datagram's either. UDP datagrams larger than the MTU
// travel as IPv4 fragments; with every frame corrupted on its way out,
// no datagram reaches the receiver, as without GSO, where its stack
// checks: the end checks each datagram with its last fragment.
func TestPipeGSOCorruptedFragmentsDropped(t *testing.T) {
	for _, gso := range []bool{false, true} {
		a, b := tap.Pipe(tap.WithPipeGSO(gso))
		fa := tap.NewFault(a, tap.FaultConfig{Corrupt: 1, Seed: 7})
		sa, sb := newUDPStack(t, fa, ip4(1)), newUDPStack(t, b, ip4(2))
		if err := sa.AddStaticNeighbor(1, ipv4.ProtocolNumber, ip4(2), b.LinkAddress()); err != nil {
			t.Fatal(err)
		}
		rx, err := gonet.DialUDP(sb, &tcpip.FullAddress{NIC: 1, Addr: ip4(2), Port: 9000}, nil, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := gonet.DialUDP(sa, nil, &tcpip.FullAddress{NIC: 1, Addr: ip4(2), Port: 9000}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		for range n {
			if _, err := tx.Write(make([]byte, 4000)); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		buf := make([]byte, 8000)
		for {
			_ = rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := rx.Read(buf); err != nil {
				break
			}
			got++
		}
		st := fa.Stats()
		if st.Corrupted == 0 || got != 0 {
			t.Errorf("gso %v: %d frames corrupted; %d of %d datagrams received, want none", gso, st.Corrupted, got, n)
		}
		if gso && a.Stats().DroppedBadChecksum != n {
			t.Errorf("gso %v: DroppedBadChecksum %d, want %d (a datagram's last fragment each)", gso, a.Stats().DroppedBadChecksum, n)
		}
		rx.Close()
		tx.Close()
		sa.Close()
		sb.Close()
		sa.Wait()
		sb.Wait()
	}
}

func ip4(host byte) tcpip.Address { return tcpip.AddrFrom4([4]byte{192, 0, 2, host}) }

// newUDPStack is a gVisor stack with IPv4 and UDP on ep, address addr.
func newUDPStack(t *testing.T, ep stack.LinkEndpoint, addr tcpip.Address) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()},
		stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	return s
}
