//go:build linux

package tap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// rejoinChain is a device with GRO under a fault middleware of cfg, as a
// stack has them (device, Ethernet, faults), with rec above: frames handed
// to the device's deliverVnet come out at rec. The device has no file; it
// is marked closed so that attaching starts no read loop.
func rejoinChain(cfg FaultConfig) (*fdLink, *Fault, *recvDispatcher) {
	return rejoinChainGRO(cfg, true)
}

func rejoinChainGRO(cfg FaultConfig, gro bool) (*fdLink, *Fault, *recvDispatcher) {
	l := newTestLink(nil, Offloads{GRO: gro})
	l.closed = true
	f := NewFault(ethernet.New(l), cfg)
	rec := &recvDispatcher{}
	f.Attach(rec)
	return l, f, rec
}

// TestRejoinIntactRuns: the kernel's super-frame of 20 segments comes in
// under a middleware that corrupts and loses inbound frames. The device
// hands it up as its wire segments, the faults draw for each, and the
// stack gets, in order: each run of segments passed on intact joined into
// one super-frame (two or more), with a checksum that verifies and that a
// capture cuts into exactly the wire segments it stands for (CWR on the
// first of the whole, PSH and FIN on the last); a lone intact segment as
// it was; each corrupted segment alone, its checksum failing; nothing for
// a lost one.
func TestRejoinIntactRuns(t *testing.T) {
	const n = 20
	for _, c := range []struct {
		v6  bool
		mss int // odd: a run's segments start at odd offsets of its payload
	}{{false, 1448}, {true, 1448}, {false, 1447}} {
		v6, mss := c.v6, c.mss
		s := seg{v6: v6, seq: 100, ack: 7, flags: header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin | header.TCPFlagCwr,
			window: 9, tsval: 3, payload: pattern((n-1)*mss + 17)}
		h, frame := kernelSuperFrame(s, mss)
		wire := segmentsOf(t, tcpFrame(s), mss)
		checked := 0
		for seed := uint64(1); seed <= 40 && checked < 5; seed++ {
			faulty := map[int]FaultKind{}
			cfg := FaultConfig{
				Inbound: &FaultConfig{Corrupt: 0.15, Loss: 0.1, Source: rand.NewPCG(seed, 1)},
				Observer: func(ev FaultEvent) {
					faulty[int(ev.Frame)-1] = ev.Kind
				},
			}
			l, f, rec := rejoinChain(cfg)
			l.deliverVnet(rxSplit(withVnet(h, frame)))
			// What the stack should get: runs of intact segments,
			// broken by each faulty one.
			type piece struct {
				first, last int
				corrupted   bool // else intact
			}
			var want []piece
			joined := 0
			for i := 0; i < n; {
				if k, ok := faulty[i]; ok {
					if k == FaultCorrupt {
						want = append(want, piece{i, i, true})
					}
					i++
					continue
				}
				j := i
				for j+1 < n {
					if _, bad := faulty[j+1]; bad {
						break
					}
					j++
				}
				want = append(want, piece{i, j, false})
				if j > i {
					joined += j - i + 1
				}
				i = j + 1
			}
			if joined == 0 || len(want) == 1 {
				continue // a draw that tests nothing of a run's end
			}
			checked++
			name := fmt.Sprintf("v6 %v MSS %d seed %d", v6, mss, seed)
			if len(rec.frames) != len(want) {
				t.Fatalf("%s: %d frames reached the stack, want %d (faults %v)", name, len(rec.frames), len(want), faulty)
			}
			for k, p := range want {
				got := rec.frames[k]
				switch {
				case p.corrupted:
					if ipFrameValid(got) || len(got) != len(wire[p.first]) {
						t.Errorf("%s: frame %d, corrupted segment %d: checksum verifies %v, %d bytes", name, k, p.first, ipFrameValid(got), len(got))
					}
				case p.first == p.last:
					if !bytes.Equal(got, wire[p.first]) {
						t.Errorf("%s: frame %d: lone segment %d differs from the wire's", name, k, p.first)
					}
				default:
					if !ipFrameValid(got) {
						t.Errorf("%s: frame %d: joined segments %d-%d: checksum fails", name, k, p.first, p.last)
					}
					typ := stack.GSOTCPv4
					if v6 {
						typ = stack.GSOTCPv6
					}
					if g := rec.gso[k]; g.Type != typ || int(g.MSS) != mss {
						t.Errorf("%s: frame %d: GSO options %+v, want a super-frame of MSS %d", name, k, g, mss)
					}
					cut := segmentsOf(t, got, mss)
					if len(cut) != p.last-p.first+1 {
						t.Fatalf("%s: frame %d: joined %d-%d cuts into %d segments", name, k, p.first, p.last, len(cut))
					}
					for c := range cut {
						if !bytes.Equal(cut[c], wire[p.first+c]) {
							t.Errorf("%s: frame %d: joined %d-%d: its segment %d differs from the wire's", name, k, p.first, p.last, p.first+c)
						}
					}
				}
			}
			if st := f.InboundStats(); st.Frames != n || st.Rejoined != uint64(joined) {
				t.Errorf("%s: stats %+v: want %d frames, %d rejoined", name, st, n, joined)
			}
		}
		if checked == 0 {
			t.Fatalf("v6 %v MSS %d: no seed made a run and a fault", v6, mss)
		}
	}
}

// TestRejoinOnlyWhenSplit: without inbound corruption the device hands the
// super-frame up whole and the middleware leaves it so; with it, a
// segment the middleware passes on alone (a duplicate: the frame twice)
// breaks the run, and the copies go as they are; and a device without
// GRO hands the stack wire segments, joined by no one.
func TestRejoinOnlyWhenSplit(t *testing.T) {
	s := seg{seq: 100, ack: 7, flags: header.TCPFlagAck, window: 9, payload: pattern(10 * 1448)}
	h, frame := kernelSuperFrame(s, 1448)

	l, f, rec := rejoinChain(FaultConfig{Inbound: &FaultConfig{Loss: 0.01, Source: rand.NewPCG(1, 1)}})
	l.deliverVnet(rxSplit(withVnet(h, frame)))
	if len(rec.frames) != 1 || f.InboundStats().Rejoined != 0 || f.InboundStats().Frames != 1 {
		t.Errorf("loss only: %d frames, stats %+v; want the super-frame whole", len(rec.frames), f.InboundStats())
	}

	l, f, rec = rejoinChain(FaultConfig{Inbound: &FaultConfig{Corrupt: 1e-9, Duplicate: 1, Source: rand.NewPCG(1, 1)}})
	l.deliverVnet(rxSplit(withVnet(h, frame)))
	if len(rec.frames) != 20 || f.InboundStats().Rejoined != 0 {
		t.Errorf("every segment duplicated: %d frames, stats %+v; want 20, none joined", len(rec.frames), f.InboundStats())
	}

	l, f, rec = rejoinChainGRO(FaultConfig{Inbound: &FaultConfig{Corrupt: 1e-9, Source: rand.NewPCG(1, 1)}}, false)
	l.deliverVnet(rxSplit(withVnet(h, frame)))
	if len(rec.frames) != 10 || f.InboundStats().Rejoined != 0 {
		t.Errorf("no GRO: %d frames, stats %+v; want the 10 wire segments, none joined", len(rec.frames), f.InboundStats())
	}
}
