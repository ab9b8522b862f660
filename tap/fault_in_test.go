package tap_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// recorder is the stack above a Fault: it keeps what is delivered.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, pkt.ToView().AsSlice())
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *recorder) ids() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ids(r.frames)
}

// inboundFrame is a frame as the ethernet endpoint under a Fault delivers
// it: its link header parsed, the rest (an IPv4 header and 100 bytes
// ending in id) unparsed.
func inboundFrame(id byte) *stack.PacketBuffer {
	b := make([]byte, linkLen+netLen+tcpLen+100)
	b[linkLen] = 0x45 // IPv4, 20-byte header
	for i := linkLen + netLen; i < len(b); i++ {
		b[i] = id
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.LinkHeader().Consume(linkLen)
	return pkt
}

// deliver hands frames to f as its inner link would.
func deliver(f *tap.Fault, ids ...byte) {
	for _, id := range ids {
		pkt := inboundFrame(id)
		f.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
}

func inboundFault(cfg tap.FaultConfig) (*tap.Fault, *recorder, *[]tap.FaultEvent) {
	var mu sync.Mutex
	evs := &[]tap.FaultEvent{}
	cfg.Seed = 7
	cfg.Observer = func(ev tap.FaultEvent) {
		mu.Lock()
		*evs = append(*evs, ev)
		mu.Unlock()
	}
	f, _ := newFault(cfg)
	r := &recorder{}
	f.Attach(r)
	return f, r, evs
}

// TestFaultInbound: each fault applies to inbound frames too, counted in
// InboundStats and reported, while outbound frames pass untouched.
func TestFaultInbound(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   tap.FaultConfig
		want []byte
		kind tap.FaultKind
		st   tap.FaultStats
	}{
		{"loss", tap.FaultConfig{Loss: 1}, nil, tap.FaultLoss, tap.FaultStats{Frames: 3, Lost: 3}},
		{"duplicate", tap.FaultConfig{Duplicate: 1}, []byte{1, 1, 2, 2, 3, 3}, tap.FaultDuplicate, tap.FaultStats{Frames: 3, Duplicated: 3}},
		{"reorder", tap.FaultConfig{Reorder: 1, ReorderTimeout: time.Hour}, []byte{2, 1}, tap.FaultReorder, tap.FaultStats{Frames: 3, Reordered: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			f, r, evs := inboundFault(tap.FaultConfig{Inbound: &in})
			deliver(f, 1, 2, 3)
			if got := r.ids(); !bytes.Equal(got, tc.want) {
				t.Errorf("delivered %v, want %v", got, tc.want)
			}
			if st := f.InboundStats(); st != tc.st {
				t.Errorf("inbound stats %+v, want %+v", st, tc.st)
			}
			if st := f.Stats(); st != (tap.FaultStats{}) {
				t.Errorf("outbound stats %+v, want none", st)
			}
			if len(*evs) == 0 {
				t.Fatal("no fault reported")
			}
			for i, ev := range *evs {
				if ev.Dir != tap.FaultInbound || ev.Kind != tc.kind || ev.N != uint64(i+1) || !ev.Seeded || ev.Seed != 7 || len(ev.Data) == 0 {
					t.Errorf("event %d: %+v", i, ev)
				}
			}
			f.Close()
			f.Wait()
		})
	}
}

// TestFaultInboundCorrupt: an inbound frame's byte after the IP header
// changes; the IP header and the sender's buffer stay intact.
func TestFaultInboundCorrupt(t *testing.T) {
	f, r, evs := inboundFault(tap.FaultConfig{Inbound: &tap.FaultConfig{Corrupt: 1}})
	pkt := inboundFrame(4)
	orig := pkt.ToView().AsSlice()
	f.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
	if !bytes.Equal(pkt.ToView().AsSlice(), orig) {
		t.Error("the delivered packet's own buffer was changed")
	}
	pkt.DecRef()
	if len(r.frames) != 1 || len(*evs) != 1 {
		t.Fatalf("%d frames, %d events", len(r.frames), len(*evs))
	}
	got, ev := r.frames[0], (*evs)[0]
	if ev.Offset < linkLen+netLen || got[ev.Offset] == orig[ev.Offset] || !bytes.Equal(got[:linkLen+netLen], orig[:linkLen+netLen]) {
		t.Errorf("corrupted at %d: %x", ev.Offset, got)
	}
	if !bytes.Equal(ev.Data, got) {
		t.Error("the report does not carry the frame as delivered")
	}
	f.Close()
}

// TestFaultInboundReportFirst: an inbound fault is reported just before its
// frame reaches the stack, so a capture above can tie them.
func TestFaultInboundReportFirst(t *testing.T) {
	var order []string
	r := &orderRecorder{order: &order}
	f, _ := newFault(tap.FaultConfig{Seed: 1, Inbound: &tap.FaultConfig{Duplicate: 1},
		Observer: func(ev tap.FaultEvent) { order = append(order, "report "+ev.Kind.String()) }})
	f.Attach(r)
	deliver(f, 1)
	if got := strings.Join(order, ", "); got != "frame, report duplicated, frame" {
		t.Errorf("order: %s", got)
	}
	f.Close()
}

type orderRecorder struct {
	recorder
	order *[]string
}

func (r *orderRecorder) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	*r.order = append(*r.order, "frame")
}

// TestFaultJitterKeepsOrder: jitter delays frames by different amounts but
// never lets one overtake another.
func TestFaultJitterKeepsOrder(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Delay: time.Millisecond, Jitter: 5 * time.Millisecond})
	send(t, f, 1, 2, 3, 4, 5, 6, 7, 8)
	deadline := time.Now().Add(5 * time.Second)
	for inner.NumQueued() < 8 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := ids(received(inner)); !bytes.Equal(got, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("got %v", got)
	}
	f.Close()
	f.Wait()
}

// TestFaultRate: at 8 kbit/s a 154-byte frame takes 154 ms to serialize, so
// the second of two frames cannot have left within 100 ms of the first.
func TestFaultRate(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Rate: 8000})
	send(t, f, 1, 2)
	deadline := time.Now().Add(5 * time.Second)
	for inner.NumQueued() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := inner.NumQueued(); n != 1 {
		t.Errorf("%d frames left at once, want 1", n)
	}
	if st := f.Stats(); st.Delayed != 2 {
		t.Errorf("stats %+v", st)
	}
	f.Close()
	f.Wait()
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"10mbit": 10e6, "500kbit": 500e3, "1gbit": 1e9, "64bit": 64, "1mbps": 8e6, "1.5Mbit": 1.5e6, "0": 0} {
		if got, err := tap.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-1mbit", "mbit"} {
		if _, err := tap.ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) succeeded", bad)
		}
	}
}

func TestFaultEventString(t *testing.T) {
	for _, tc := range []struct {
		ev   tap.FaultEvent
		want string
	}{
		{tap.FaultEvent{Kind: tap.FaultLoss, Prob: 0.05, Seed: 7, Seeded: true, N: 312}, "dropped (loss 5%, seed 7, #312)"},
		{tap.FaultEvent{Kind: tap.FaultCorrupt, Prob: 0.01, Offset: 57, N: 2}, "corrupted byte 57 (corrupt 1%, #2)"},
		{tap.FaultEvent{Kind: tap.FaultDelay, Delay: 20 * time.Millisecond, N: 1}, "delayed 20ms (#1)"},
	} {
		if got := tc.ev.String(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}

// consumer is the stack above a Fault as gVisor's is: it consumes the
// network header of every packet it is given, which a packet allows once.
type consumer struct {
	mu     sync.Mutex
	frames [][]byte
}

func (c *consumer) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if _, ok := pkt.NetworkHeader().Consume(netLen); !ok {
		panic("no network header")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, pkt.ToView().AsSlice())
}

func (c *consumer) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestFaultInboundDuplicateIsFresh: a duplicated inbound frame reaches the
// network layer as two packets of its own, even after a reordering hold:
// gVisor consumes a packet's headers, and the second delivery of one
// packet would panic ("consume must not be called twice").
func TestFaultInboundDuplicateIsFresh(t *testing.T) {
	in := tap.FaultConfig{Duplicate: 1, Reorder: 0.5, ReorderTimeout: time.Hour}
	f, _ := newFault(tap.FaultConfig{Inbound: &in, Seed: 3})
	c := &consumer{}
	f.Attach(c)
	deliver(f, 1, 2, 3, 4, 5, 6)
	f.Close()
	f.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) < 10 {
		t.Fatalf("%d frames delivered, want the duplicates too", len(c.frames))
	}
	for _, fr := range c.frames {
		if len(fr) != linkLen+netLen+tcpLen+100 {
			t.Errorf("a delivered frame has %d bytes, want %d", len(fr), linkLen+netLen+tcpLen+100)
		}
	}
}
