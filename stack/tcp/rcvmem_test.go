package tcp_test

import (
	"bytes"
	"testing"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// Traces of the stack's receive memory limit (rcvmem.go): what the
// connections hold together, counted exactly, the window that stops
// opening near the limit, the text dropped at it, and the connection
// holding nothing unread that takes its segment all the same.

// wantRcvMem checks what Usage says the connections hold.
func wantRcvMem(t *testing.T, p *tcptest.Peer, want int) {
	t.Helper()
	if got := p.TCP.Usage().ReceiveMemory; got != want {
		t.Errorf("Usage().ReceiveMemory = %d, want %d", got, want)
	}
}

// wantMemDrops checks the drops for memory: counters and events.
func wantMemDrops(t *testing.T, p *tcptest.Peer, d *drops, want int) {
	t.Helper()
	p.TCP.SyncEvents()
	wantCount(t, "LimitStats.ReceiveMemory", p.TCP.Limits().ReceiveMemory.Load(), uint64(want))
	wantCount(t, "Dropped(DropReceiveMemory)", p.TCP.Stats().Dropped(event.DropReceiveMemory), uint64(want))
	if got := len(d.of(event.DropReceiveMemory)); got != want {
		t.Errorf("%d DropReceiveMemory events, want %d", got, want)
	}
}

// TestReceiveMemoryInOrder: with a limit of 3,000 bytes, two segments of
// 1,460 stay unread; the window stops opening (its right edge stays at
// 1+65535, where the SYN-ACK put it). The third segment is dropped and
// answered at once with an ACK of what is held. Once the user reads, the
// peer's retransmission is taken, and the user reads the stream as sent.
func TestReceiveMemoryInOrder(t *testing.T) {
	d := &drops{}
	p, ep := sackPeer(t, tcptest.WithTCP(tcp.Options{ReceiveMemoryLimit: 3000, Observer: d.observe}))
	data := payload(0, 3*1460)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461}) // the first data: a quick ACK
	p.Inject(seg{Flags: "P.", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
	p.Drain()
	wantRcvMem(t, p, 2920)

	p.Inject(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2921, Win: 65535 - 2920}) // the edge promised, no further
	p.ExpectNothing()
	wantRcvMem(t, p, 2920)
	wantMemDrops(t, p, d, 1)

	got := make([]byte, 0, len(data))
	buf := make([]byte, 1460)
	n, err := ep.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, buf[:n]...)
	wantRcvMem(t, p, 2920-n)
	p.Drain()
	p.Inject(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:]}) // the retransmission
	wantRcvMem(t, p, 4380-n)
	got = append(got, readAll(t, ep)...)
	if !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, not the %d sent", len(got), len(data))
	}
	wantRcvMem(t, p, 0)
	wantMemDrops(t, p, d, 1)
}

// TestReceiveMemoryForcedProgress: two connections under a limit of
// 2,000 bytes. The first holds 1,460 unread. The second holds nothing, and
// takes its 1,460 all the same, past the limit (Linux's
// sk_forced_mem_schedule): no connection is starved by the others. The
// next segment of either, each holding text unread, is dropped.
func TestReceiveMemoryForcedProgress(t *testing.T) {
	d := &drops{}
	p := tcptest.New(t, tcptest.WithTCP(tcp.Options{ReceiveMemoryLimit: 2000, Observer: d.observe}))
	l := p.Listen(16)
	var clients []*client
	for _, port := range []uint16{40000, 40001} {
		c := syn(t, p, port)
		p.Inject(seg{Flags: ".", Seq: 1, Ack: 1})
		if _, err := l.Accept(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	data := payload(0, 2*1460)
	for _, c := range clients {
		c.use(p)
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: data[:1460]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461})
	}
	wantRcvMem(t, p, 2920)
	wantMemDrops(t, p, d, 0)
	for _, c := range clients {
		c.use(p)
		p.Inject(seg{Flags: "P.", Seq: 1461, Ack: 1, Payload: data[1460:]})
		p.Expect(seg{Flags: ".", Seq: 1, Ack: 1461})
	}
	wantRcvMem(t, p, 2920)
	wantMemDrops(t, p, d, 2)
}

// TestReceiveMemoryOutOfOrder: out-of-order text needs nothing of the
// user to stay, so it is what a peer would fill the stack with. At the
// limit it is dropped without an ACK (Linux's tcp_data_queue_ofo, as when
// the connection's own queue is full); once the user has read, it is held
// and SACKed, charged by the heap it pins, and the whole of it leaves the
// count when the hole fills and the user reads.
func TestReceiveMemoryOutOfOrder(t *testing.T) {
	d := &drops{}
	p, ep := sackPeer(t, tcptest.WithTCP(tcp.Options{ReceiveMemoryLimit: 3000, Observer: d.observe}))
	data := payload(0, 3*1460)
	p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: data[:1460]})
	p.Inject(seg{Flags: "P.", Seq: 1461, Ack: 1, Payload: data[1460:2920]})
	p.Drain()
	p.Inject(seg{Flags: "P.", Seq: 3921, Ack: 1, Payload: data[3920:]}) // a hole of 1,000 below it
	p.ExpectNothing()
	wantRcvMem(t, p, 2920)
	wantMemDrops(t, p, d, 1)

	got := readAll(t, ep)
	wantRcvMem(t, p, 0)
	p.Drain()
	p.Inject(seg{Flags: "P.", Seq: 3921, Ack: 1, Payload: data[3920:]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 2921, SACK: sackBlocks{{3921, 4381}}})
	if held := p.TCP.Usage().ReceiveMemory; held < 460 {
		t.Errorf("out-of-order text of 460 bytes charged %d", held)
	}
	p.Inject(seg{Flags: "P.", Seq: 2921, Ack: 1, Payload: data[2920:3920]}) // the hole
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4381})
	wantRcvMem(t, p, 1460)
	got = append(got, readAll(t, ep)...)
	if !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, not the %d sent", len(got), len(data))
	}
	wantRcvMem(t, p, 0)
	wantMemDrops(t, p, d, 1)
}

// TestReceiveMemoryReleased: what a connection held leaves the count
// however it ends: unread and out-of-order text at an abort; out-of-order
// text at the FIN that leads to TIME-WAIT, the unread text once read.
func TestReceiveMemoryReleased(t *testing.T) {
	t.Run("abort", func(t *testing.T) {
		p, ep := sackPeer(t)
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 1000)})
		p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 1, Payload: payload(2000, 1000)})
		p.Drain()
		if p.TCP.Usage().ReceiveMemory <= 2000 {
			t.Fatalf("Usage().ReceiveMemory = %d with 1,000 unread and 1,000 held out of order", p.TCP.Usage().ReceiveMemory)
		}
		ep.Reset()
		wantRcvMem(t, p, 0)
	})
	t.Run("close", func(t *testing.T) {
		p, ep := sackPeer(t)
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 1, Payload: payload(0, 1000)})
		p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 1, Payload: payload(2000, 1000)})
		p.Drain()
		ep.Close() // unread text: RST (RFC 2525 2.17)
		p.WantState(ep, event.Closed)
		wantRcvMem(t, p, 0)
	})
	t.Run("time-wait", func(t *testing.T) {
		p, ep := sackPeer(t)
		if err := ep.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		p.Expect(seg{Flags: "F.", Seq: 1, Ack: 1})
		p.Inject(seg{Flags: "P.", Seq: 1, Ack: 2, Payload: payload(0, 1000)})
		p.Inject(seg{Flags: "P.", Seq: 2001, Ack: 2, Payload: payload(2000, 1000)})
		p.Drain()
		if p.TCP.Usage().ReceiveMemory <= 2000 {
			t.Fatalf("Usage().ReceiveMemory = %d with 1,000 unread and 1,000 held out of order", p.TCP.Usage().ReceiveMemory)
		}
		// A FIN at 1001: the text held above it can never be valid.
		p.Inject(seg{Flags: "F.", Seq: 1001, Ack: 2})
		p.Drain()
		p.WantState(ep, event.TimeWait)
		wantRcvMem(t, p, 1000) // kept for Read
		if got := readAll(t, ep); len(got) != 1000 {
			t.Fatalf("read %d bytes", len(got))
		}
		wantRcvMem(t, p, 0)
	})
}
