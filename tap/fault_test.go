package tap_test

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

const (
	linkLen, netLen, tcpLen = 14, 20, 20
	hdrLen                  = linkLen + netLen + tcpLen
)

// segment builds an outbound frame shaped like what a NIC hands its link
// endpoint: link, network and transport headers pushed, with id in the
// payload so tests can tell frames apart.
func segment(id byte) *stack.PacketBuffer {
	payload := bytes.Repeat([]byte{id}, 100)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: hdrLen,
		Payload:            buffer.MakeWithData(payload),
	})
	copy(pkt.TransportHeader().Push(tcpLen), bytes.Repeat([]byte{0xee}, tcpLen))
	copy(pkt.NetworkHeader().Push(netLen), bytes.Repeat([]byte{0x45}, netLen))
	copy(pkt.LinkHeader().Push(linkLen), bytes.Repeat([]byte{0xaa}, linkLen))
	return pkt
}

// send writes frames with the given ids through f, one WritePackets each.
func send(t *testing.T, f *tap.Fault, ids ...byte) {
	t.Helper()
	for _, id := range ids {
		pkt := segment(id)
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if _, err := f.WritePackets(l); err != nil {
			t.Fatalf("WritePackets: %v", err)
		}
		pkt.DecRef()
	}
}

// received drains inner and returns the frames' bytes.
func received(inner *channel.Endpoint) [][]byte {
	var out [][]byte
	for pkt := inner.Read(); pkt != nil; pkt = inner.Read() {
		out = append(out, pkt.ToView().AsSlice())
		pkt.DecRef()
	}
	return out
}

func ids(frames [][]byte) []byte {
	var s []byte
	for _, f := range frames {
		s = append(s, f[len(f)-1])
	}
	return s
}

func newFault(cfg tap.FaultConfig) (*tap.Fault, *channel.Endpoint) {
	inner := channel.New(64, 1514, tcpip.LinkAddress(tap.RandomMAC()))
	if cfg.Source == nil {
		cfg.Source = rand.NewPCG(7, 7)
	}
	return tap.NewFault(inner, cfg), inner
}

func TestFaultPassThrough(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{})
	send(t, f, 1, 2, 3)
	if got := ids(received(inner)); !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("got %v, want [1 2 3]", got)
	}
	if st := f.Stats(); st != (tap.FaultStats{Frames: 3}) {
		t.Errorf("stats %+v", st)
	}
	f.Close()
	f.Wait()
}

// writeOne writes the frame with the given id through f and returns what
// WritePackets said.
func writeOne(f *tap.Fault, id byte) (int, tcpip.Error) {
	pkt := segment(id)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	return f.WritePackets(l)
}

// TestFaultNotSent: frames the link below refuses (its queue of two is
// full) are no fault of the middleware's, but it reports them, so that a
// capture above can mark them: FaultNotSent, with the frame's bytes. The
// sender hears of it as if no middleware were there: none of its frame
// taken, tcpip.ErrNoBufferSpace.
func TestFaultNotSent(t *testing.T) {
	inner := channel.New(2, 1514, tcpip.LinkAddress(tap.RandomMAC()))
	var evs []tap.FaultEvent
	f := tap.NewFault(inner, tap.FaultConfig{Source: rand.NewPCG(7, 7), Observer: func(ev tap.FaultEvent) {
		ev.Data = bytes.Clone(ev.Data)
		evs = append(evs, ev)
	}})
	for id := byte(1); id <= 4; id++ {
		n, err := writeOne(f, id)
		_, full := err.(*tcpip.ErrNoBufferSpace)
		if taken := id <= 2; (n == 1) != taken || (err == nil) != taken || (!taken && !full) {
			t.Errorf("frame %d: WritePackets = %d, %v; want %d taken", id, n, err, map[bool]int{true: 1}[taken])
		}
	}
	if got := ids(received(inner)); !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("the link took %v, want [1 2]", got)
	}
	if st := f.Stats(); st != (tap.FaultStats{Frames: 4, NotSent: 2}) {
		t.Errorf("stats %+v, want 4 frames, 2 not sent", st)
	}
	if len(evs) != 2 || ids([][]byte{evs[0].Data, evs[1].Data})[1] != 4 {
		t.Fatalf("events %+v, want FaultNotSent for frames 3 and 4", evs)
	}
	for i, ev := range evs {
		if ev.Kind != tap.FaultNotSent || ev.Dir != tap.FaultOutbound || ev.N != uint64(i+1) || ev.Data[len(ev.Data)-1] != byte(3+i) ||
			ev.String() != "not sent: the link's queue was full (#"+strconv.Itoa(i+1)+")" {
			t.Errorf("event %d: %v %v #%d %q", i, ev.Kind, ev.Dir, ev.N, ev.String())
		}
	}
	f.Close()
}

// TestFaultNotSentLeftEarlier: the sender hears of a refusal only for a
// frame that never left its hands. A duplicate refused after its first
// copy went is the frame sent; a delayed frame left when the middleware
// took it (netem orphans what it holds), and its refusal later is only
// reported (FaultNotSent). The link below holds one frame.
func TestFaultNotSentLeftEarlier(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     tap.FaultConfig
		taken   [2]int // of frames 1 and 2, as WritePackets says
		notSent int32
	}{
		// 1's copy is refused, then both of 2's.
		{"duplicate", tap.FaultConfig{Duplicate: 1}, [2]int{1, 0}, 3},
		// Both taken into the delay line; 2 refused when it flushes.
		{"delay", tap.FaultConfig{Delay: time.Millisecond}, [2]int{1, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := channel.New(1, 1514, tcpip.LinkAddress(tap.RandomMAC()))
			var notSent atomic.Int32
			tc.cfg.Source = rand.NewPCG(7, 7)
			tc.cfg.Observer = func(ev tap.FaultEvent) {
				if ev.Kind == tap.FaultNotSent {
					notSent.Add(1)
				}
			}
			f := tap.NewFault(inner, tc.cfg)
			defer f.Close()
			for i, want := range tc.taken {
				n, err := writeOne(f, byte(i+1))
				_, full := err.(*tcpip.ErrNoBufferSpace)
				if n != want || (want == 1) != (err == nil) || (want == 0 && !full) {
					t.Errorf("frame %d: WritePackets = %d, %v; want %d taken", i+1, n, err, want)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for notSent.Load() < tc.notSent && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond) // no more comes
			if got := notSent.Load(); got != tc.notSent {
				t.Errorf("%d frames reported not sent, want %d", got, tc.notSent)
			}
		})
	}
}

func TestFaultLoss(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Loss: 1})
	send(t, f, 1, 2, 3)
	if got := received(inner); len(got) != 0 {
		t.Errorf("%d frames got through", len(got))
	}
	if st := f.Stats(); st.Lost != 3 {
		t.Errorf("Lost = %d, want 3", st.Lost)
	}
	f.Close()
}

func TestFaultDuplicate(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Duplicate: 1})
	send(t, f, 1, 2)
	if got := ids(received(inner)); !bytes.Equal(got, []byte{1, 1, 2, 2}) {
		t.Errorf("got %v, want [1 1 2 2]", got)
	}
	f.Close()
}

func TestFaultReorder(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Reorder: 1, ReorderTimeout: time.Hour})
	send(t, f, 1, 2, 3, 4, 5)
	// 1 is held and follows 2; 3 is held and follows 4; 5 is held.
	if got := ids(received(inner)); !bytes.Equal(got, []byte{2, 1, 4, 3}) {
		t.Errorf("got %v, want [2 1 4 3]", got)
	}
	if st := f.Stats(); st.Reordered != 3 {
		t.Errorf("Reordered = %d, want 3", st.Reordered)
	}
	// Close drops the held frame and stops its timer.
	f.Close()
	f.Wait()
}

func TestFaultReorderTimeout(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Reorder: 1, ReorderTimeout: 5 * time.Millisecond})
	send(t, f, 9)
	if got := received(inner); len(got) != 0 {
		t.Fatalf("held frame sent at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for inner.NumQueued() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := ids(received(inner)); !bytes.Equal(got, []byte{9}) {
		t.Errorf("got %v after timeout, want [9]", got)
	}
	f.Close()
	f.Wait()
}

func TestFaultCorrupt(t *testing.T) {
	f, inner := newFault(tap.FaultConfig{Corrupt: 1})
	orig := segment(5)
	want := orig.ToView().AsSlice()
	var l stack.PacketBufferList
	l.PushBack(orig)
	f.WritePackets(l)
	// The sender's packet must be untouched: it may be retransmitted.
	if got := orig.ToView().AsSlice(); !bytes.Equal(got, want) {
		t.Errorf("original packet modified")
	}
	orig.DecRef()
	got := received(inner)
	if len(got) != 1 {
		t.Fatalf("%d frames, want 1", len(got))
	}
	if !bytes.Equal(got[0][:linkLen+netLen], want[:linkLen+netLen]) {
		t.Errorf("link or network header changed")
	}
	diff := 0
	for i := range want {
		if got[0][i] != want[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d bytes differ, want 1", diff)
	}
	if st := f.Stats(); st.Corrupted != 1 {
		t.Errorf("Corrupted = %d", st.Corrupted)
	}
	f.Close()
}

func TestFaultDelay(t *testing.T) {
	const delay = 30 * time.Millisecond
	goroutinesBack := goroutineBaseline(t) // the delay's timer goroutine ends with Close
	f, inner := newFault(tap.FaultConfig{Delay: delay})
	start := time.Now()
	send(t, f, 1, 2, 3)
	if inner.NumQueued() != 0 {
		t.Fatalf("delayed frames sent at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for inner.NumQueued() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if el := time.Since(start); el < delay {
		t.Errorf("frames arrived after %v, want >= %v", el, delay)
	}
	if got := ids(received(inner)); !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("got %v, want [1 2 3]", got)
	}
	// Frames still waiting at Close are dropped, and Wait returns.
	send(t, f, 4)
	f.Close()
	f.Wait()
	time.Sleep(2 * delay)
	if got := received(inner); len(got) != 0 {
		t.Errorf("%d frames sent after Close", len(got))
	}
	goroutinesBack()
}

func TestFaultDeterministic(t *testing.T) {
	run := func() (tap.FaultStats, []byte) {
		f, inner := newFault(tap.FaultConfig{
			Loss: 0.2, Duplicate: 0.2, Reorder: 0.2, Corrupt: 0.2,
			ReorderTimeout: time.Hour, Source: rand.NewPCG(42, 1),
		})
		defer f.Close()
		for i := range 50 {
			send(t, f, byte(i))
		}
		var all []byte
		for _, fr := range received(inner) {
			all = append(all, fr...)
		}
		return f.Stats(), all
	}
	s1, b1 := run()
	s2, b2 := run()
	if s1 != s2 || !bytes.Equal(b1, b2) {
		t.Errorf("same seed, different runs: %+v vs %+v", s1, s2)
	}
	if s1.Lost == 0 || s1.Duplicated == 0 || s1.Reordered == 0 || s1.Corrupted == 0 {
		t.Errorf("some fault never applied: %+v", s1)
	}
}

func TestFaultConcurrent(t *testing.T) {
	check := goroutineBaseline(t)
	inner := channel.New(100000, 1514, tcpip.LinkAddress(tap.RandomMAC()))
	f := tap.NewFault(inner, tap.FaultConfig{
		Loss: 0.1, Duplicate: 0.1, Reorder: 0.1, Corrupt: 0.1,
		Delay: time.Millisecond, ReorderTimeout: time.Millisecond,
		Source: rand.NewPCG(3, 3),
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				pkt := segment(byte(g*200 + i))
				var l stack.PacketBufferList
				l.PushBack(pkt)
				f.WritePackets(l)
				pkt.DecRef()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = f.Stats()
			time.Sleep(100 * time.Microsecond)
		}
	})
	wg.Wait()
	time.Sleep(20 * time.Millisecond)
	f.Close()
	f.Wait()
	st := f.Stats()
	if st.Frames != 1600 {
		t.Errorf("Frames = %d, want 1600", st.Frames)
	}
	inner.Close()
	check()
}

// TestFaultReorderReportsNameTheHeldFrame: Reorder holds frame 1 back
// until frame 2 has gone, and the delay queue has room for one frame
// (Delay, MaxDelayed 1). The reports made when the held frame finally
// moves on (its delay; its drop for a full queue) name its own ordinal,
// 1, not that of frame 2, which overtook it: an observer that tells
// identical frames apart by the ordinal (pcap's capture above) puts them
// on the held frame.
func TestFaultReorderReportsNameTheHeldFrame(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxDelayed int
		last       tap.FaultKind
	}{
		{"delayed", 0, tap.FaultDelay},
		{"queue full", 1, tap.FaultQueueFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evs []tap.FaultEvent
			f, _ := newFault(tap.FaultConfig{Reorder: 1, ReorderTimeout: time.Hour, Delay: time.Hour, MaxDelayed: tc.maxDelayed,
				Observer: func(ev tap.FaultEvent) { evs = append(evs, ev) }})
			send(t, f, 1, 2)
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Kind.String()+" "+strconv.FormatUint(ev.Frame, 10))
			}
			want := []string{tap.FaultReorder.String() + " 1", tap.FaultDelay.String() + " 2", tc.last.String() + " 1"}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("reports %v; want %v", got, want)
			}
			f.Close()
			f.Wait()
		})
	}
}
