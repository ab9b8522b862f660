package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestSmallQueues: TCP small queues (smallqueues.go, Linux's
// tcp_small_queue_check). While the link's outbound queue is busy, new
// data waits, counted in Stats.LinkBusy; here the link never says it took
// frames out (TestSmallQueuesRoomOpened), so the next ACK lets it go; frames built in
// the same run count against the room the queue has left. With nothing
// in flight, the data goes anyway: no ACK would come to release it.
func TestSmallQueues(t *testing.T) {
	p, ep, mss, seg1 := threeInQueue(t)
	if n := p.TCP.Stats().LinkBusy.Load(); n != 1 {
		t.Errorf("LinkBusy %d, want 1", n)
	}
	if i := ep.Info(); int(i.InFlight) != 3*mss {
		t.Errorf("in flight %d, want the three segments that left", i.InFlight)
	}

	// Still busy: the ACK of the first sends nothing new.
	p.SetLinkRoom(0)
	p.Advance(rtt)
	p.Inject(sackAckM(mss, 2))
	p.ExpectNothing()

	// The queue has room again: the next ACK sends what the window
	// allows, the rest of the data.
	p.SetLinkRoom(1000)
	p.Inject(sackAckM(mss, 3))
	for k := 4; k <= 10; k++ {
		p.Expect(seg1(k))
	}
	p.ExpectNothing()

	// Everything acknowledged, the queue busy: new data still goes,
	// one segment, which draws the ACK that sends the next.
	p.SetLinkRoom(0)
	p.Inject(sackAckM(mss, 11))
	if _, err := ep.Write(payload(10*mss, 2*mss)); err != nil {
		t.Fatal(err)
	}
	p.Expect(seg1(11))
	p.ExpectNothing()
	p.Inject(sackAckM(mss, 12))
	p.Expect(seg1(12))
}

// threeInQueue is an established connection whose link's queue has room
// for three frames and whose user wrote ten segments: the first goes with
// nothing in flight, the next two fill the room, the rest of the initial
// window waits. It returns the MSS and the k-th segment's expectation.
func threeInQueue(t *testing.T) (*tcptest.Peer, *tcp.Endpoint, int, func(k int) seg) {
	t.Helper()
	p, ep := rttPeer(t, tcp.Options{})
	mss := ep.Info().SndMSS
	seg1 := func(k int) seg { return seg{Flags: ".", Seq: sbm(mss, k), Ack: 1, Len: mss, Check: tcptest.IgnorePSH} }
	p.SetLinkRoom(3)
	if _, err := ep.Write(payload(0, 10*mss)); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 3; k++ {
		p.Expect(seg1(k))
	}
	p.ExpectNothing()
	return p, ep, mss, seg1
}

// TestSmallQueuesGSO: with GSO the link is asked once per packet, when a
// train starts, as Linux asks once per skb: the segments that join the
// held run leave in its frame. Room for three frames and ten segments to
// send, the window's initial ten: two packets of five (a packet is at
// most half the window), where asking at every segment, with the held
// ones counted as frames, stopped the first packet at three segments and
// held the rest for an ACK.
func TestSmallQueuesGSO(t *testing.T) {
	p, ep := tcptest.Established(t, tcptest.WithGSO())
	p.SetLinkRoom(3)
	if _, err := ep.Write(payload(0, 10*1460)); err != nil {
		t.Fatal(err)
	}
	for k := range 10 {
		p.Expect(seg{Flags: ".", Seq: 1 + uint32(k*1460), Ack: 1, Len: 1460, Check: tcptest.IgnorePSH})
	}
	p.ExpectNothing()
	if p.GSOPackets != 2 || p.TCP.Stats().LinkBusy.Load() != 0 {
		t.Errorf("%d GSO packets, %d link-busy waits; want 2 packets, none", p.GSOPackets, p.TCP.Stats().LinkBusy.Load())
	}
}

// TestSmallQueuesRoomOpened: what lets held data go is the link taking
// frames out of its queue and saying so (stack.QueueingLink's
// OnOutboundRoom; Linux's TX completion, tcp_wfree), not only the next
// ACK: the rest of the window leaves at once, with no ACK. A word from
// a link still busy sends nothing and holds the data again, for the
// next; one with nobody held does nothing.
func TestSmallQueuesRoomOpened(t *testing.T) {
	p, ep, mss, seg1 := threeInQueue(t)
	st := p.TCP.Stats()

	// The writer took a frame, but the queue is still busy.
	p.DrainLink(0)
	p.ExpectNothing()
	if n, m := st.LinkBusy.Load(), st.LinkRoomSends.Load(); n != 2 || m != 1 {
		t.Errorf("LinkBusy %d, LinkRoomSends %d; want 2, 1: held, tried, held again", n, m)
	}

	// The writer emptied the queue: the rest of the initial window
	// goes now, before any ACK.
	p.DrainLink(1000)
	for k := 4; k <= 10; k++ {
		p.Expect(seg1(k))
	}
	p.ExpectNothing()
	if n := st.LinkRoomSends.Load(); n != 2 {
		t.Errorf("LinkRoomSends %d, want 2", n)
	}
	if i := ep.Info(); int(i.InFlight) != 10*mss {
		t.Errorf("in flight %d, want the whole window, %d", i.InFlight, 10*mss)
	}
	p.DrainLink(1000) // nobody held now
	p.ExpectNothing()
	if n := st.LinkRoomSends.Load(); n != 2 {
		t.Errorf("LinkRoomSends %d after a word with nobody held, want 2", n)
	}
}
