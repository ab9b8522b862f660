package interop

import (
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

// TestProbeDrawsAnswerFromGVisor: tapstack sends to gVisor's TCP, and
// every ACK of the first flight (ten segments, the initial window) is
// lost, as is any ACK that acknowledges no more than that flight: the
// answers to copies of its segments. A probe that copies the last
// segment, as tapstack's did when the congestion window was full, and
// the RTO's retransmissions after it would draw only such answers, all
// lost here: one RTO after another. The probe is new data instead (RFC
// 8985 7.3), two segments of it, which gVisor acknowledges beyond the
// flight, and the flight's loss costs one probe timeout, no RTO. Every
// byte is checked by hash.
func TestProbeDrawsAnswerFromGVisor(t *testing.T) {
	t.Parallel()
	// 5 ms each way: the probe timeout, 2·SRTT, is 20 ms, well after
	// gVisor's ACK of the flight would come. A machine that stalls the
	// stacks longer than that can let the probe go first, and then no
	// ACK of the flight is left to lose: the scenario is tried again, up
	// to three times.
	delay := tap.FaultConfig{Delay: 5 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		var gate *ackGate
		p := newGVPair(t, cable{tsFault: &delay, peerFault: &delay, frames: 400, tsTap: func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
			gate = newACKGate(l)
			return gate
		}})
		c, pc := p.tapstackDials(t, 80)
		mss := c.Endpoint().Info().SndMSS
		gate.arm(uint32(10 * mss)) // the initial window's flight
		exchange(t, c, pc, 64<<10, aToB, 20*time.Second)
		c.Close()
		pc.Close()
		st := p.ts.TCP().Stats()
		dropped := gate.count()
		t.Logf("attempt %d: ACKs dropped %d; probes %d (segments %d), RTOs %d", attempt, dropped, st.TailLossProbes.Load(), st.Sent(event.SendTLP), st.RetransmitTimeouts.Load())
		if dropped == 0 {
			if attempt == 3 {
				t.Fatal("no ACK of the first flight was dropped in three attempts: the probe went before every one")
			}
			continue
		}
		if rto, rx := st.RetransmitTimeouts.Load(), st.Retransmits.Load(); rto != 0 || rx != 0 {
			t.Errorf("%d RTOs, %d retransmissions; want none: the probe, new data, draws an ACK of everything", rto, rx)
		}
		return
	}
}

// ackGate is link middleware on tapstack's side that, once armed, drops
// every pure ACK the peer sends whose ACK number is at most the given
// number of bytes past the ACK number it last let through: the ACKs of a
// flight, and the peer's answers to copies of it.
type ackGate struct {
	nested.Endpoint
	mu      sync.Mutex
	lastAck uint32
	limit   uint32
	armed   bool
	dropped int
}

func newACKGate(inner gstack.LinkEndpoint) *ackGate {
	g := &ackGate{}
	g.Endpoint.Init(inner, g)
	return g
}

func (g *ackGate) arm(bytes uint32) {
	g.mu.Lock()
	g.limit, g.armed = g.lastAck+bytes, true
	g.mu.Unlock()
}

func (g *ackGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}

func (g *ackGate) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	v := pkt.ToView()
	h, _ := frameTCP(v.AsSlice())
	drop := false
	if h != nil && h.Flags()&header.TCPFlagAck != 0 {
		pure := h.Flags()&(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagRst) == 0 && len(h) == int(h.DataOffset())
		g.mu.Lock()
		if ack := h.AckNumber(); pure && g.armed && int32(ack-g.limit) <= 0 {
			drop = true
			g.dropped++
		} else {
			g.lastAck = ack
		}
		g.mu.Unlock()
	}
	v.Release()
	if drop {
		return
	}
	g.Endpoint.DeliverNetworkPacket(proto, pkt)
}
