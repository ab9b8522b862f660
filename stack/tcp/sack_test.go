package tcp_test

import (
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// sackPeer is a peer that offers SACK-permitted (RFC 2018 2).
func sackPeer(t *testing.T, opts ...tcptest.Option) (*tcptest.Peer, *tcp.Endpoint) {
	return tcptest.Established(t, append(opts, tcptest.WithSynOptions(seg{MSS: 1460, SACKPerm: true}))...)
}

// TestSACKNegotiation: our SYN offers SACK-permitted; our SYN-ACK answers
// it only if the SYN offered it (RFC 2018 2); NoSACK offers nothing.
func TestSACKNegotiation(t *testing.T) {
	p := tcptest.New(t)
	p.Connect()
	p.Expect(seg{Flags: "S", Seq: 0, SACKPerm: true})

	p, _ = tcptest.Listen(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckSACKPerm})

	p, _ = tcptest.Listen(t)
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, SACKPerm: true})

	p, _ = tcptest.Listen(t, tcptest.WithTCP(tcp.Options{NoSACK: true}))
	p.Inject(seg{Flags: "S", Seq: 0, MSS: 1460, SACKPerm: true})
	p.Expect(seg{Flags: "S.", Seq: 0, Ack: 1, Check: tcptest.CheckSACKPerm})
}

// TestSACKBlocks: out-of-order data is reported in SACK blocks on the
// duplicate ACKs, the block of the latest segment first (RFC 2018 4);
// once the hole fills, the cumulative ACK carries no blocks.
func TestSACKBlocks(t *testing.T) {
	p, ep := sackPeer(t)
	if !ep.Info().SACK {
		t.Fatal("SACK not in force though both SYNs offered it")
	}
	data := payload(0, 4000)
	p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: data[1000:2000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{1001, 2001}}})
	p.Inject(seg{Flags: ".", Seq: 3001, Ack: 1, Payload: data[3000:4000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{3001, 4001}, {1001, 2001}}})
	p.Inject(seg{Flags: ".", Seq: 2001, Ack: 1, Payload: data[2000:3000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, SACK: [][2]uint32{{1001, 4001}}})
	p.Inject(seg{Flags: ".", Seq: 1, Ack: 1, Payload: data[:1000]})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 4001, Check: tcptest.CheckSACK})
	got := make([]byte, 5000)
	if n, _ := ep.Read(got); n != 4000 || string(got[:n]) != string(data) {
		t.Fatalf("read %d bytes, want the 4000 sent in order", n)
	}
}

// TestNoSACKWithoutPermission: a peer that did not offer SACK-permitted
// gets plain duplicate ACKs.
func TestNoSACKWithoutPermission(t *testing.T) {
	p, ep := tcptest.Established(t)
	if ep.Info().SACK {
		t.Fatal("SACK in force though the peer did not offer it")
	}
	p.Inject(seg{Flags: ".", Seq: 1001, Ack: 1, Payload: payload(0, 1000)})
	p.Expect(seg{Flags: ".", Seq: 1, Ack: 1, Check: tcptest.CheckSACK})
}
