//go:build linux

package tap

import (
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// flowFrame is the frame of segment seq of the flow from source port
// port: tcpFrame's, its port changed (the plain write path sends it as
// it is, checksum and all).
func flowFrame(port uint16, seq uint32) []byte {
	fr := tcpFrame(seg{seq: seq, ack: 1, flags: header.TCPFlagAck, payload: pattern(100)})
	binary.BigEndian.PutUint16(fr[header.EthernetMinimumSize+header.IPv4MinimumSize:], port)
	return fr
}

// TestWritePacketsQueues: a device of two queues (two descriptors, no
// offloads) takes one write of 16 flows' segments, four each,
// interleaved. Each flow's segments come out of one queue, in order, and
// both queues carry some flows.
func TestWritePacketsQueues(t *testing.T) {
	const flows, per = 16, 4
	f0, rc0, peer0 := seqpacketPair(t)
	f1, rc1, peer1 := seqpacketPair(t)
	l := newFDLink(config{mtu: DefaultMTU, txQueue: 1000}, Offloads{}, []*os.File{f0, f1}, []syscall.RawConn{rc0, rc1})
	defer func() {
		for _, q := range l.qs {
			q.txq.close()
		}
	}()
	var pkts stack.PacketBufferList
	for s := range uint32(per) {
		for p := range uint16(flows) {
			pkts.PushBack(outPacket(flowFrame(1000+p, 1+s*100), 4096))
		}
	}
	n, err := l.WritePackets(pkts)
	pkts.DecRef()
	if n != flows*per || err != nil {
		t.Fatalf("WritePackets: %d of %d, %v", n, flows*per, err)
	}
	if !l.FlushOutbound(10 * time.Second) {
		t.Fatal("flush timed out")
	}
	queueOf := map[uint16]int{}
	next := map[uint16]uint32{}
	perQueue := [2]int{}
	for qi, peer := range []int{peer0, peer1} {
		if err := unix.SetNonblock(peer, true); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		for range flows*per + 1 {
			m, err := unix.Read(peer, buf)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			tcp := header.TCP(buf[header.EthernetMinimumSize+header.IPv4MinimumSize : m])
			port, seq := tcp.SourcePort(), tcp.SequenceNumber()
			if q, ok := queueOf[port]; ok && q != qi {
				t.Errorf("flow %d on queues %d and %d", port, q, qi)
			}
			queueOf[port] = qi
			if want := next[port] + 1; seq != want {
				t.Errorf("flow %d: segment %d after %d, want %d", port, seq, next[port], want)
			}
			next[port] = seq + 99
			perQueue[qi]++
		}
	}
	if len(queueOf) != flows || perQueue[0]+perQueue[1] != flows*per {
		t.Errorf("%d flows and %d frames came out, want %d and %d", len(queueOf), perQueue[0]+perQueue[1], flows, flows*per)
	}
	if perQueue[0] == 0 || perQueue[1] == 0 {
		t.Errorf("frames per queue %v: want both queues used", perQueue)
	}
	if qs := l.qs; qs[0].writes.Load()+qs[1].writes.Load() != flows*per {
		t.Errorf("writes counted %d + %d, want %d", qs[0].writes.Load(), qs[1].writes.Load(), flows*per)
	}
}

// TestTxQueueOf: one flow's frames take one queue whatever their
// sequence number; a device of one queue takes everything on it; a frame
// that is not IP (ARP) takes queue 0.
func TestTxQueueOf(t *testing.T) {
	a := outPacket(flowFrame(1000, 1), 4096)
	b := outPacket(flowFrame(1000, 90001), 4096)
	defer a.DecRef()
	defer b.DecRef()
	for _, n := range []int{2, 3, 4, 256} {
		if qa, qb := txQueueOf(a, n), txQueueOf(b, n); qa != qb || qa < 0 || qa >= n {
			t.Errorf("%d queues: one flow on %d and %d", n, qa, qb)
		}
	}
	if q := txQueueOf(a, 1); q != 0 {
		t.Errorf("one queue: %d", q)
	}
	arp := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 64})
	defer arp.DecRef()
	copy(arp.NetworkHeader().Push(header.ARPSize), make([]byte, header.ARPSize))
	if q := txQueueOf(arp, 4); q != 0 {
		t.Errorf("ARP on queue %d, want 0", q)
	}
}
