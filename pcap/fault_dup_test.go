package pcap_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestFaultDuplicateInboundNotRetransmission: the fault middleware below
// the capture delivers each in-order data segment from the peer twice.
// The copy is the fault's: its comment says "fault: duplicated" and what
// the engine made of it (dropped: old sequence), and never "retransmission
// of frame N", which is what the peer's TCP did not do (Wireshark's own
// analysis calls it one; the oracle lets the fault's word answer it). The
// first copy keeps the engine's "in order". With Reorder too, the copy
// goes first and the original after the next segment: neither is called
// a retransmission of the other.
func TestFaultDuplicateInboundNotRetransmission(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   tap.FaultConfig
	}{
		{"duplicate", tap.FaultConfig{Duplicate: 1}},
		{"duplicate and reorder", tap.FaultConfig{Duplicate: 1, Reorder: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFaultConnPair(t, 100*time.Millisecond, &tap.FaultConfig{Inbound: &tc.in}, noSACKNoTS)
			p.settle()
			tmpl := p.rec.last(t)
			th := tcpOf(tmpl)
			t0 := time.Now()
			for i := range 2 {
				p.inject(rebuild(tmpl, segment{seq: th.SequenceNumber() + uint32(i)*100, ack: th.AckNumber(),
					flags: header.TCPFlagAck | header.TCPFlagPsh, payload: make([]byte, 100)}))
			}
			p.settle()
			frames, dump := p.read(t, t0)
			copies := map[uint32][]pcap.Packet{}
			for _, f := range inbound(frames) {
				if _, k, _ := f.TCP(); k.Len == 100 {
					copies[k.Seq] = append(copies[k.Seq], f)
				}
			}
			if len(copies) != 2 {
				t.Fatalf("%d data segments, want 2:\n%s", len(copies), dump)
			}
			for seq, cs := range copies {
				if len(cs) != 2 {
					t.Errorf("seq %d: %d copies, want 2", seq, len(cs))
					continue
				}
				dups := 0
				for _, c := range cs {
					if strings.Contains(c.Comment(), "retransmission") {
						t.Errorf("frame %d, a copy the fault made, says %q", c.Number, c.Comment())
					}
					if strings.Contains(c.Comment(), "fault: duplicated") {
						dups++
					}
				}
				if dups != 1 {
					t.Errorf("seq %d: %d copies say the fault duplicated them, want 1", seq, dups)
				}
				if c := cs[0].Comment(); !strings.Contains(c, "in order") || cs[0].Dropped {
					t.Errorf("frame %d, the first copy, says %q (dropped %v); want the engine's \"in order\"", cs[0].Number, c, cs[0].Dropped)
				}
				if c := cs[1].Comment(); !strings.Contains(c, "dropped: old sequence") || !cs[1].Dropped || strings.Contains(c, "in order") {
					t.Errorf("frame %d, the second copy, says %q (dropped %v); want the engine's drop alone", cs[1].Number, c, cs[1].Dropped)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("capture:\n%s", dump)
			}
		})
	}
}

// noSACKNoTS turns SACK and Timestamps off, so that segments the engine
// sends for the same reason (repeated duplicate ACKs) are identical byte
// for byte.
func noSACKNoTS(o *tcp.Options) { o.NoSACK, o.NoTimestamps = true, true }

// TestFaultSuperFrameWhole: the server's engine sends its trains as
// super-frames over a pipe with segmentation offload, through a fault
// middleware below the capture, which takes a super-frame as one frame
// (tap.FaultConfig.Loss: lost whole, as netem drops a GSO packet). The
// capture writes each as its wire segments: what the fault did to the
// super-frame is on every one of them, dropped with the fault's reason
// when it was lost, and no report is left unmatched.
func TestFaultSuperFrameWhole(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  tap.FaultConfig
		want string
	}{
		{"delay", tap.FaultConfig{Delay: time.Millisecond}, "fault: delayed"},
		{"loss", tap.FaultConfig{Loss: 0.1, Seed: 2}, "fault: dropped (loss 10%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFaultConnPair(t, 100*time.Millisecond, &tc.cfg, nil, tap.WithPipeGSO(true))
			p.settle()
			t0 := time.Now()
			data := bytes.Repeat([]byte("x"), 256<<10)
			go p.srv.Write(data)
			if _, err := io.ReadFull(p.cli, make([]byte, len(data))); err != nil {
				t.Fatal(err)
			}
			p.settle()
			st := p.capture.Stats()
			frames, dump := p.read(t, t0)
			trains, faulted := 0, 0
			for i, f := range frames {
				var n, mss int
				if f.Direction != pcap.Outbound {
					continue
				}
				if _, err := fmt.Sscanf(f.Comment(), "TSO %d×%d of", &n, &mss); err != nil {
					continue
				}
				trains++
				hit := strings.Contains(f.Comment(), tc.want)
				if hit {
					faulted++
				}
				for j := i; j < i+n && j < len(frames); j++ {
					g := frames[j]
					if strings.Contains(g.Comment(), tc.want) != hit || g.Dropped != (hit && tc.cfg.Loss > 0) {
						t.Errorf("frame %d, wire segment %d/%d of frame %d: %q, dropped %v; the super-frame's fault %v",
							g.Number, j-i+1, n, f.Number, g.Comment(), g.Dropped, hit)
					}
				}
			}
			if trains == 0 || faulted == 0 {
				t.Errorf("%d super-frames, %d met the fault: the test shows nothing", trains, faulted)
			}
			if st.Unmatched != 0 {
				t.Errorf("%d reports unmatched", st.Unmatched)
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("capture:\n%s", dump)
			}
		})
	}
}

// switchSource is a rand.Source for a fault whose draws all hit while
// hit is set, and all miss otherwise: a test says which frames the fault
// takes.
type switchSource struct{ hit atomic.Bool }

func (s *switchSource) Uint64() uint64 {
	if s.hit.Load() {
		return 0
	}
	return ^uint64(0)
}

// TestFaultLostNeighbourTakesNoEngineDrop: a segment from the peer to a
// port nobody listens on is lost by the fault middleware below the
// capture, on its way in; a copy of it, the same SEQ, ACK, flags and
// length, follows with a bad checksum, which the fault lets through and
// the engine drops for it before it looks for a socket (so the event
// names no connection, and is matched by the segment alone). The drop is
// the copy's: the lost frame, which the engine never saw, says only what
// the fault did.
func TestFaultLostNeighbourTakesNoEngineDrop(t *testing.T) {
	src := &switchSource{}
	p := newFaultConnPair(t, 100*time.Millisecond, &tap.FaultConfig{Inbound: &tap.FaultConfig{Loss: 0.5, Source: src}}, nil)
	p.settle()
	tmpl := p.rec.last(t)
	th := tcpOf(tmpl)
	th.SetDestinationPort(9) // no listener
	seg := segment{seq: th.SequenceNumber(), ack: th.AckNumber(), flags: header.TCPFlagAck | header.TCPFlagPsh, payload: make([]byte, 100)}
	t0 := time.Now()
	src.hit.Store(true)
	p.inject(rebuild(tmpl, seg))
	src.hit.Store(false)
	seg.badCsum = true
	p.inject(rebuild(tmpl, seg))
	p.settle()
	frames, dump := p.read(t, t0)
	in := inbound(frames)
	if len(in) != 2 {
		t.Fatalf("%d inbound frames, want 2:\n%s", len(in), dump)
	}
	if c := in[0].Comment(); c != "fault: dropped (loss 50%, #1)" || !in[0].Dropped {
		t.Errorf("the lost frame says %q (dropped %v); want the fault's drop alone", c, in[0].Dropped)
	}
	if c := in[1].Comment(); !strings.Contains(c, "dropped: bad checksum") || !in[1].Dropped {
		t.Errorf("the copy with a bad checksum says %q (dropped %v); want the engine's drop", c, in[1].Dropped)
	}
	if t.Failed() {
		t.Logf("capture:\n%s", dump)
	}
}

// TestFaultSuperFrameInbound: the client's engine sends its trains as
// super-frames over a pipe with segmentation offload; the fault
// middleware below the server's capture takes each as one frame on its
// way in. A super-frame it lost is written as the wire segments it stands
// for, as every super-frame the stack saw is: one wire segment per
// captured frame, "TSO n×mss of b B" on the first, each dropped with the
// fault's reason. One it duplicated arrives twice, and no wire segment of
// either copy is called a retransmission: the client sent it once.
func TestFaultSuperFrameInbound(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   tap.FaultConfig
		want string
	}{
		{"loss", tap.FaultConfig{Loss: 0.1}, "fault: dropped (loss 10%"},
		{"duplicate", tap.FaultConfig{Duplicate: 0.5}, "fault: duplicated (dup 50%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFaultConnPair(t, 100*time.Millisecond, &tap.FaultConfig{Seed: 2, Inbound: &tc.in}, nil, tap.WithPipeGSO(true))
			p.settle()
			t0 := time.Now()
			data := bytes.Repeat([]byte("x"), 256<<10)
			go p.cli.Write(data)
			if _, err := io.ReadFull(p.srv, make([]byte, len(data))); err != nil {
				t.Fatal(err)
			}
			p.settle()
			frames, dump := p.read(t, t0)
			in := inbound(frames)
			mss := 0
			for _, f := range in {
				if _, err := fmt.Sscanf(f.Comment(), "TSO %d×%d of", new(int), &mss); err == nil {
					break
				}
			}
			if mss == 0 {
				t.Fatalf("no inbound super-frame: the test shows nothing\n%s", dump)
			}
			seqOf := map[int]uint32{}
			for _, f := range in {
				_, k, _ := f.TCP()
				seqOf[f.Number] = k.Seq
			}
			trains := 0
			for i, f := range in {
				_, k, _ := f.TCP()
				if k.Len > mss {
					t.Errorf("frame %d: %d bytes of TCP text, over the MSS %d: a super-frame written whole", f.Number, k.Len, mss)
				}
				if tc.in.Duplicate > 0 && strings.Contains(f.Comment(), "retransmission") {
					t.Errorf("frame %d says %q: the client sent it once", f.Number, f.Comment())
				}
				// The client's retransmission of a lost wire segment
				// names that wire segment's frame, as Wireshark does.
				var of int
				if _, rest, ok := strings.Cut(f.Comment(), "retransmission of frame "); ok {
					fmt.Sscanf(rest, "%d", &of)
				}
				if o, ok := seqOf[of]; of != 0 && (!ok || o != k.Seq) {
					t.Errorf("frame %d (SEQ %d) says %q: frame %d has SEQ %d", f.Number, k.Seq, f.Comment(), of, o)
				}
				var n int
				if _, err := fmt.Sscanf(f.Comment(), "TSO %d×", &n); err != nil || !strings.Contains(f.Comment(), tc.want) {
					continue
				}
				trains++
				for j := i; j < i+n && j < len(in); j++ {
					if g := in[j]; tc.in.Loss > 0 && !g.Dropped || j > i && !strings.HasPrefix(g.Comment(), fmt.Sprintf("TSO %d/%d of frame %d", j-i+1, n, f.Number)) {
						t.Errorf("frame %d, wire segment %d/%d of frame %d: %q, dropped %v", g.Number, j-i+1, n, f.Number, g.Comment(), g.Dropped)
					}
				}
			}
			if trains == 0 {
				t.Errorf("no super-frame with %q: the test shows nothing", tc.want)
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("capture:\n%s", dump)
			}
		})
	}
}

// TestFaultDuplicateDelayedOnce: the fault middleware below the capture
// sends the server's segment twice (Duplicate) and delays both copies.
// The capture above holds one frame, the stack's: its comment says it was
// duplicated, and then the fate of each copy once, the original's and its
// copy's, not "delayed" twice as if the one frame had been held back
// twice.
func TestFaultDuplicateDelayedOnce(t *testing.T) {
	t.Run("duplicate", func(t *testing.T) {
		testDuplicateDelayedOnce(t, tap.FaultConfig{Duplicate: 1, Delay: time.Millisecond})
	})
	// Held back, the original leaves after its copy: its fate is told
	// first all the same.
	t.Run("duplicate and reorder", func(t *testing.T) {
		testDuplicateDelayedOnce(t, tap.FaultConfig{Duplicate: 1, Reorder: 1, Delay: time.Millisecond})
	})
}

func testDuplicateDelayedOnce(t *testing.T, cfg tap.FaultConfig) {
	p := newFaultConnPair(t, 50*time.Millisecond, &cfg, nil)
	p.settle()
	t0 := time.Now()
	if _, err := p.srv.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	p.settle()
	frames, dump := p.read(t, t0)
	var data []pcap.Packet
	for _, f := range frames {
		if _, k, _ := f.TCP(); f.Direction == pcap.Outbound && k.Len == 5 {
			data = append(data, f)
		}
	}
	if len(data) != 1 {
		t.Fatalf("%d frames with the data, want 1 (the copy is not the capture's):\n%s", len(data), dump)
	}
	c := data[0].Comment()
	if strings.Count(c, "fault: delayed 1ms") != 1 || strings.Count(c, ", its copy delayed 1ms") != 1 || data[0].Dropped {
		t.Errorf("the segment says %q (dropped %v); want \"fault: delayed 1ms (...), its copy delayed 1ms (...)\" once", c, data[0].Dropped)
	}
	if t.Failed() {
		t.Logf("capture:\n%s", dump)
	}
}
