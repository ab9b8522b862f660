package tcp

import (
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Selective acknowledgment, the data receiver's half (RFC 2018): when both
// SYNs carried SACK-permitted, ACKs report the out-of-order data we hold,
// so the peer retransmits only the holes. The sender's half (using the
// peer's blocks, RFC 6675) is not implemented; RFC 2018 lets a sender
// ignore SACK information, and ours recovers with NewReno.

// segmentOptions writes the options of a segment that is not a SYN: the
// TSopt when timestamps are in force, then SACK blocks. SACK blocks go
// only on segments without data: a full-size data segment has no room for
// them (Linux shrinks the MSS instead; we keep data segments at a fixed
// size), and RFC 2018 4 only SHOULDs them on every ACK.
func (e *Endpoint) segmentOptions(flags header.TCPFlags, hasData bool, b *[header.TCPOptionsMaximumSize]byte) []byte {
	n := 0
	if e.tsOK {
		n += e.timestampOption(flags, b[:])
	}
	if e.sackOK && !hasData && flags&header.TCPFlagAck != 0 && flags&(header.TCPFlagSyn|header.TCPFlagRst) == 0 && len(e.ooo) > 0 {
		var blocks [header.TCPMaxSACKBlocks]header.SACKBlock
		// Two NOPs keep the blocks 4-byte aligned (RFC 2018 3: the
		// option takes 8n+2 bytes).
		room := len(b) - n - 2
		if k := e.sackBlocks(blocks[:min((room-2)/8, len(blocks))]); k > 0 {
			n += header.EncodeNOP(b[n:])
			n += header.EncodeNOP(b[n:])
			n += header.EncodeSACKBlocks(blocks[:k], b[n:])
		}
	}
	return b[:n]
}

// sackBlocks fills out with the out-of-order data we hold as SACK blocks
// and returns how many. RFC 2018 4: the first block covers the most
// recently received segment; we list the others from the highest sequence
// number down, each a maximal run of held bytes.
func (e *Endpoint) sackBlocks(out []header.SACKBlock) int {
	if len(out) == 0 {
		return 0
	}
	var runs []header.SACKBlock
	for _, x := range e.ooo {
		if x.data.Size() == 0 {
			continue // a FIN marker holds no data
		}
		if k := len(runs); k > 0 && runs[k-1].End == x.seq {
			runs[k-1].End = x.end()
			continue
		}
		runs = append(runs, header.SACKBlock{Start: x.seq, End: x.end()})
	}
	first := slices.IndexFunc(runs, func(r header.SACKBlock) bool {
		return e.seqKey(r.Start) <= e.seqKey(e.lastOOO) && e.seqKey(e.lastOOO) < e.seqKey(r.End)
	})
	n := 0
	if first >= 0 {
		out[n] = runs[first]
		n++
	}
	for i := len(runs) - 1; i >= 0 && n < len(out); i-- {
		if i != first {
			out[n] = runs[i]
			n++
		}
	}
	return n
}
