package pcap_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

const notSent = "not sent: the link's queue was full"

// TestLinkRefused: a frame the link below does not take is marked on its
// own record, dropped and "not sent", not counted on a later frame. The
// pipe's far end has no stack, so its pump never runs: the first two
// frames fill the queue of two and the next three are refused.
func TestLinkRefused(t *testing.T) {
	a, _ := tap.Pipe(tap.WithPipeQueue(2))
	defer a.Close()
	var buf bytes.Buffer
	w, err := pcap.New(a, &buf, pcap.Options{LinkDrops: func() uint64 { return a.Stats().DroppedQueueFull }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Repeat([]byte{byte(i)}, 60))})
		var l gstack.PacketBufferList
		l.PushBack(pkt)
		n, _ := w.WritePackets(l)
		if want := min(1, max(0, 2-i)); n != want {
			t.Errorf("frame %d: the link took %d, want %d", i+1, n, want)
		}
		pkt.DecRef()
	}
	st, pkts := closeAndRead(t, w, &buf, 5)
	for i, p := range pkts {
		refused := i >= 2
		if p.Dropped != refused || strings.Contains(p.Comment(), notSent) != refused || p.DropCount != 0 {
			t.Errorf("frame %d: dropped %v, drop count %d, comment %q; want dropped %v and no count", i+1, p.Dropped, p.DropCount, p.Comment(), refused)
		}
	}
	if st.Refused != 3 || a.Stats().DroppedQueueFull != 3 {
		t.Errorf("Stats.Refused %d, the pipe's DroppedQueueFull %d; want 3 and 3", st.Refused, a.Stats().DroppedQueueFull)
	}
}

// TestLinkRefusedExchange: tapstack sends 4 MiB to gVisor's TCP over a
// pipe whose queue holds 8 frames, without segmentation offload, so the
// sender's bursts outgrow the queue and the pipe refuses frames. Every
// refused frame is in the capture, marked as not sent on its own record,
// and no later frame counts it again; its data leaves later in a frame
// that reaches the wire, and the peer gets every byte (pcaptest.Transfer
// checks the SHA-256). With a fault middleware between the capture and
// the pipe, the middleware reports what the pipe refused
// (tap.FaultNotSent). The engine hears of every refusal, takes refused
// new data at the tail back or deems a segment lost that a later one
// overtook (refused.go), and its recovery note is on the refused frame.
func TestLinkRefusedExchange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault *tap.FaultConfig
	}{
		{"capture on the pipe", nil},
		{"capture on a fault middleware on the pipe", &tap.FaultConfig{Loss: 0.002, Source: rand.NewPCG(7, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) { refusedExchange(t, tc.fault) })
	}
}

func refusedExchange(t *testing.T, fault *tap.FaultConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := pcaptest.Scenario{Name: "refused", Fault: fault, PipeQueue: 8,
		Opts: tcp.Options{TimeWait: 100 * time.Millisecond}, // WaitClosed outlasts TIME-WAIT
		Run: func(ctx context.Context, w *pcaptest.World) error {
			ts, peer, done, err := w.DialPeer(ctx)
			if err != nil {
				return err
			}
			defer done()
			if err := pcaptest.Transfer(ctx, ts, peer, pcaptest.Payload(4<<20, 1)); err != nil {
				return err
			}
			return w.WaitClosed(ctx)
		}}
	// A window of 2 s: a record leaves it only after the write that
	// refused its frame returned, even on a slow machine under -race.
	w, err := sc.Capture(ctx, t, t.TempDir(), pcap.Options{Window: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	refused, st := w.PipeRefused(), w.Capture.Stats()
	if refused == 0 {
		// The initial window alone (10 segments) overfills a queue of
		// 8 when it leaves in one burst: every one of 100 runs had 73
		// or more refusals.
		t.Fatal("the pipe refused no frame: the test shows nothing")
	}
	pkts, err := pcap.ReadFile(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	marked, counted := 0, uint64(0)
	refusedFirst := map[int]pcap.Packet{} // refused first transmissions of data
	for _, p := range pkts {
		counted += p.DropCount
		if c := p.Comment(); strings.Contains(c, notSent) {
			marked++
			if !p.Dropped {
				t.Errorf("frame %d is marked not sent without a drop verdict", p.Number)
			}
			if !strings.Contains(c, "retransmit") && !strings.Contains(c, "probe") {
				refusedFirst[p.Number] = p
			}
		}
	}
	if uint64(marked) != refused || counted != 0 || st.Refused != refused {
		t.Errorf("the pipe refused %d frames; the capture marks %d and counts %d more on later frames, Stats.Refused %d", refused, marked, counted, st.Refused)
	}
	// A refused frame's data went again: a later outbound frame, not
	// dropped, carries its first byte.
	for no, r := range refusedFirst {
		_, key, _ := r.TCP()
		found := false
		for _, p := range pkts[no:] {
			if _, k, ok := p.TCP(); ok && p.Direction == pcap.Outbound && !p.Dropped && k.Len > 0 &&
				seqnum.Value(key.Seq).InRange(seqnum.Value(k.Seq), seqnum.Value(k.Seq).Add(seqnum.Size(k.Len))) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no frame carries the data of refused frame %d (%q) again", no, r.Comment())
		}
	}
	// The engine heard of each refusal (tcpip.ErrNoBufferSpace) and
	// says what it did on the refused frame itself (a later try of what
	// it refused, "try #1 of what the link refused", is on the try's).
	told := 0
	for _, p := range pkts {
		if c := p.Comment(); refusalAnswer.MatchString(c) {
			told++
			if !strings.Contains(c, notSent) {
				t.Errorf("frame %d tells of a refusal but was not refused: %q", p.Number, c)
			}
		}
	}
	if told == 0 {
		t.Error("no frame tells how the engine took a refusal (recovery: the link refused ...)")
	}
	// And each answer is on a frame: none found its frame gone or none
	// (the window outlasts the writes).
	b, err := os.ReadFile(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := pcap.ReadEvents(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	answers := 0
	for _, ev := range evs {
		if _, _, _, _, keyed := ev.Key(); keyed && ev.Kind == "recovery" && refusalAnswer.MatchString(ev.Text) {
			answers++
		}
	}
	if answers != told {
		t.Errorf("the engine answered %d refusals; %d frames tell an answer", answers, told)
	}
	t.Logf("%d frames refused by the pipe, %d marked on their own frame, %d counted later; %d tell the engine's response", refused, marked, counted, told)
}

// TestRefusalNoteOnItsFrame: the engine's note on a refusal (a recovery
// event keyed to the refused segment) goes on the frame whose refusal it
// answers, which the engine numbers (Event.Attempt), and never on a frame
// the link took. The engine reports it once the write is over, and its
// events reach the capture once its locks are released, maybe after
// frames sent since with the same key:
//   - a copy of the segment that the link took: in a
//     TestLinkRefusedExchange run (1 in 40), a fast retransmission that
//     left said "the link refused 8 segments, its queue full: deemed
//     lost", and the refused frame whose data it carried said nothing;
//   - another refused copy: the data taken back, sent again and refused
//     again before the note of the first refusal came. Each note goes on
//     its own refusal; taken by the latest frame with the key, both went
//     on the second.
func TestRefusalNoteOnItsFrame(t *testing.T) {
	link := &refusingLink{Endpoint: channel.New(16, 1500, "")}
	var buf bytes.Buffer
	w, err := pcap.New(link, &buf, pcap.Options{Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	obs := w.Observer(nil)
	c := event.ConnID{Local: netip.MustParseAddrPort("192.0.2.2:40000"), Remote: netip.MustParseAddrPort("192.0.2.1:80")}
	keyOf := func(s segment) event.SegKey {
		return event.SegKey{Seq: s.seq, Ack: s.ack, Flags: event.Flags(s.flags), Len: len(s.payload)}
	}
	write := func(s segment, send event.SendCause, refuse bool) {
		obs(event.Event{Kind: event.KindSend, Conn: c, Send: send, Key: keyOf(s)})
		pkt := packetOf(rebuild(superFrame(0), s), gstack.GSO{}, false)
		var l gstack.PacketBufferList
		l.PushBack(pkt)
		link.refuse = refuse
		w.WritePackets(l)
		pkt.DecRef()
	}
	refusal := func(s segment, n int, note string, cwnd uint32) {
		obs(event.Event{Kind: event.KindRecovery, Conn: c, Key: keyOf(s), Attempt: n, Note: note, Cwnd: cwnd, Ssthresh: cwnd})
	}
	syn := segment{seq: 999, flags: header.TCPFlagSyn}
	d := segment{seq: 1000, ack: 1, flags: header.TCPFlagAck, payload: bytes.Repeat([]byte{'d'}, 100)}
	e := segment{seq: 1100, ack: 1, flags: header.TCPFlagAck, payload: bytes.Repeat([]byte{'e'}, 100)}
	write(syn, event.SendSyn, false)          // frame 1
	write(d, event.SendData, true)            // 2: refused, the connection's refusal 1
	write(d, event.SendFastRetransmit, false) // 3: its copy, taken
	refusal(d, 1, "fast recovery: the link refused 1 segment, its queue full: deemed lost", 1000)
	write(e, event.SendData, true) // 4: refused, refusal 2
	write(e, event.SendData, true) // 5: taken back, sent again: refusal 3
	refusal(e, 2, "CWR: the link refused 1 segment, its queue full: not sent, to go again (local congestion)", 2000)
	refusal(e, 3, "the link refused 1 segment, its queue full: not sent, to go again", 3000)
	_, pkts := closeAndRead(t, w, &buf, 5)
	for i, want := range []string{"", "cwnd 1000", "", "cwnd 2000", "cwnd 3000"} {
		p := pkts[i]
		got := p.Comment()
		if n := strings.Count(got, "the link refused"); n != min(len(want), 1) || !strings.Contains(got, want) || p.Dropped != (want != "") {
			t.Errorf("frame %d: dropped %v, %q; want the note with %q on it: %v", p.Number, p.Dropped, got, want, want != "")
		}
	}
}

// refusingLink refuses every write while refuse is set, as a full queue
// does (tcpip.ErrNoBufferSpace), and takes the others.
type refusingLink struct {
	*channel.Endpoint
	refuse bool
}

func (l *refusingLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if l.refuse {
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	return l.Endpoint.WritePackets(pkts)
}

// refusalAnswer is the engine's answer to a refusal in a comment:
// "recovery: CWR: the link refused 3 segments, its queue full: ...".
var refusalAnswer = regexp.MustCompile(`the link refused \d+ segment`)

// laterRefusingLink refuses the first write it gets, counting it as a
// queue-full drop, and holds that write until resume is closed; it takes
// every later one.
type laterRefusingLink struct {
	*channel.Endpoint
	drops   atomic.Uint64
	writes  atomic.Int32
	counted chan struct{}
	resume  chan struct{}
}

func (l *laterRefusingLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if l.writes.Add(1) > 1 {
		return pkts.Len(), nil
	}
	l.drops.Add(uint64(pkts.Len()))
	close(l.counted)
	<-l.resume
	return 0, nil
}

// TestFaultLaterWriteRefused: a fault middleware that delays frames
// writes them later, on its own timer, with no write of the capture's
// under way; the link refuses the delayed frame and counts it before the
// middleware can report it (tap.FaultNotSent). A frame captured in that
// moment must not tell the count as "link drops 1", since the refused
// frame is about to say "not sent" itself: the capture reads the link's
// count through tap.Fault.LinkDrops. Then a drop no frame stands for is
// still told once, on a later frame. Without Fault.LinkDrops the frame in
// the moment said "link drops 1" and the refused frame "not sent" too,
// one refusal told twice, and the later drop was never told.
//
// If the refused frame has left the window by the time of the report
// (here MaxHeld 1 lets the next frame push it out), its record cannot
// say so any more, and the refusal is told as a link drop on a later
// frame, as when the capture sits on the link itself (Writer.refused):
// then it was told nowhere.
func TestFaultLaterWriteRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxHeld int
		marked  bool   // the refused frame says "not sent"
		told    uint64 // link drops told by later frames
	}{
		{"the frame in the window", 0, true, 1},
		{"the frame written already", 1, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, pkts := laterWriteRefused(t, tc.maxHeld)
			if p := pkts[0]; p.Dropped != tc.marked || strings.Contains(p.Comment(), notSent) != tc.marked || p.DropCount != 0 {
				t.Errorf("the refused frame: dropped %v, drop count %d, comment %q; want dropped and %q: %v", p.Dropped, p.DropCount, p.Comment(), notSent, tc.marked)
			}
			if p := pkts[1]; p.DropCount != 0 {
				t.Errorf("the frame captured while the refusal was not yet reported says %q (drop count %d): the refusal is told twice", p.Comment(), p.DropCount)
			}
			told := uint64(0)
			for _, p := range pkts[2:] {
				told += p.DropCount
			}
			if told != tc.told || st.Refused != 1 {
				t.Errorf("later frames tell %d link drops, Stats.Refused %d; want %d (the drop no frame stands for, and the refusal unless marked), and 1", told, st.Refused, tc.told)
			}
		})
	}
}

// laterWriteRefused runs TestFaultLaterWriteRefused's frames through a
// capture holding at most maxHeld frames (0: the default), and returns
// its counters and packets.
func laterWriteRefused(t *testing.T, maxHeld int) (pcap.Stats, []pcap.Packet) {
	l := &laterRefusingLink{Endpoint: channel.New(16, 1500, ""), counted: make(chan struct{}), resume: make(chan struct{})}
	var faultObs func(tap.FaultEvent)
	f := tap.NewFault(l, tap.FaultConfig{Delay: time.Millisecond, Observer: func(ev tap.FaultEvent) { faultObs(ev) }})
	var buf bytes.Buffer
	w, err := pcap.New(f, &buf, pcap.Options{LinkDrops: f.LinkDrops(l.drops.Load), MaxHeld: maxHeld})
	if err != nil {
		t.Fatal(err)
	}
	faultObs = w.FaultObserver(nil)
	frame := func(b byte) *gstack.PacketBuffer {
		return gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Repeat([]byte{b}, 60))})
	}
	out := frame(1)
	var pl gstack.PacketBufferList
	pl.PushBack(out)
	w.WritePackets(pl) // held back 1 ms by the middleware
	out.DecRef()
	<-l.counted // the middleware's timer wrote it; the link counted the refusal
	in := frame(2)
	w.DeliverNetworkPacket(header.IPv4ProtocolNumber, in) // captured in the moment
	in.DecRef()
	close(l.resume) // the middleware reports the refusal
	// A drop no frame stands for, told on a frame captured once the
	// middleware's write is over: the frames go in until one is.
	l.drops.Add(1)
	for i := range 50 {
		time.Sleep(time.Millisecond)
		in := frame(byte(3 + i))
		w.DeliverNetworkPacket(header.IPv4ProtocolNumber, in)
		in.DecRef()
	}
	return closeAndRead(t, w, &buf, 52)
}

// closeAndRead closes w's capture, written to buf, and returns its
// counters and the n packets it holds.
func closeAndRead(t *testing.T, w *pcap.Writer, buf *bytes.Buffer, n int) (pcap.Stats, []pcap.Packet) {
	t.Helper()
	st := w.Stats()
	w.CloseCapture()
	pkts, err := pcap.ReadAll(buf)
	if err != nil || len(pkts) != n {
		t.Fatalf("%d packets, %v; want %d", len(pkts), err, n)
	}
	return st, pkts
}

// takingLink takes the first take frames of each write and refuses the
// rest, its queue full (tcpip.ErrNoBufferSpace), as tap.Pipe's does.
type takingLink struct {
	*channel.Endpoint
	take int
}

func (l *takingLink) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if pkts.Len() <= l.take {
		return l.Endpoint.WritePackets(pkts)
	}
	var some gstack.PacketBufferList
	for _, pkt := range pkts.AsSlice()[:l.take] {
		some.PushBack(pkt)
	}
	if l.take > 0 {
		l.Endpoint.WritePackets(some)
	}
	return l.take, &tcpip.ErrNoBufferSpace{}
}

// TestFaultNotSentOneCopy: the fault middleware below the capture sends
// each frame twice (Duplicate) onto a link that refuses what a write
// holds beyond its queue (tap.FaultNotSent). The capture holds one frame
// for both copies; the middleware's report says which copy the link
// refused (tap.FaultEvent.Copy), and the frame says so: the frame went on
// the wire when one copy did, so it is shown dropped only when the link
// refused both. With Reorder too, the copy goes first, alone in its write,
// and the original after the next frame and its copy, where the link
// refuses them: the next frame loses its copy, the held frame itself.
func TestFaultNotSentOneCopy(t *testing.T) {
	const full = "not sent: the link's queue was full"
	for _, tc := range []struct {
		name    string
		cfg     tap.FaultConfig
		take    int
		frames  int
		comment []string
		dropped []bool
	}{
		{"copy refused", tap.FaultConfig{Duplicate: 1}, 1, 1,
			[]string{"fault: duplicated (dup 100%, #1); its copy " + full + " (#1); ethertype 0x0101"}, []bool{false}},
		{"both refused", tap.FaultConfig{Duplicate: 1}, 0, 1,
			[]string{"fault: duplicated (dup 100%, #1); " + full + " (#1), its copy not sent (#2); ethertype 0x0101"}, []bool{true}},
		{"reordered original refused", tap.FaultConfig{Duplicate: 1, Reorder: 1, ReorderTimeout: time.Minute}, 1, 2,
			[]string{
				"fault: duplicated (dup 100%, #1); fault: reordered: sent after the next frame (reorder 100%, #1); " + full + " (#2), its copy sent; ethertype 0x0101",
				"fault: duplicated (dup 100%, #2); its copy " + full + " (#1); ethertype 0x0202",
			}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &takingLink{Endpoint: channel.New(16, 1500, ""), take: tc.take}
			var faultObs func(tap.FaultEvent)
			tc.cfg.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
			f := tap.NewFault(l, tc.cfg)
			defer f.Close()
			var buf bytes.Buffer
			w, err := pcap.New(f, &buf, pcap.Options{})
			if err != nil {
				t.Fatal(err)
			}
			faultObs = w.FaultObserver(nil)
			for i := range tc.frames {
				pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Repeat([]byte{byte(1 + i)}, 60))})
				var pl gstack.PacketBufferList
				pl.PushBack(pkt)
				w.WritePackets(pl)
				pkt.DecRef()
			}
			st, pkts := closeAndRead(t, w, &buf, tc.frames)
			for i, p := range pkts {
				if p.Comment() != tc.comment[i] || p.Dropped != tc.dropped[i] {
					t.Errorf("frame %d: dropped %v, %q\nwant dropped %v, %q", p.Number, p.Dropped, p.Comment(), tc.dropped[i], tc.comment[i])
				}
			}
			if st.Unmatched != 0 {
				t.Errorf("%d reports unmatched", st.Unmatched)
			}
		})
	}
}
