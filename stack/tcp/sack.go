package tcp

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Selective acknowledgment (RFC 2018), in force when both SYNs carried
// SACK-permitted. As data receiver, our ACKs, data segments included,
// report the out-of-order data we hold (reassembly.go), so the peer
// retransmits only the holes, and text we received twice (D-SACK, RFC
// 2883), so it can tell a needless retransmission. As data sender, we keep
// the peer's blocks in a scoreboard and recover from loss with RFC 6675
// (congestion.go) instead of NewReno.

// segmentOptions writes the options of a segment that is not a SYN: the
// TSopt when timestamps are in force, then SACK blocks on every segment
// that carries an ACK while we hold out-of-order data or owe a D-SACK (RFC
// 2018 4: "all ACKs which do not ACK the highest sequence number in the
// data receiver's queue"; RFC 2883), data segments included. On a data
// segment the blocks must fit in the send MSS with its payloadLen bytes of
// text: the sender leaves room for them (sackOptionSize), as Linux's
// tcp_current_mss does; a segment that leaves less room (sized before the
// blocks were due) carries as many as fit, or none. The D-SACK is reported
// once: it is forgotten when written.
func (e *Endpoint) segmentOptions(flags header.TCPFlags, payloadLen int, b *[header.TCPOptionsMaximumSize]byte) []byte {
	n := 0
	if e.tsOK {
		n += e.timestampOption(flags, b[:])
	}
	if !e.sackOK || flags&header.TCPFlagAck == 0 || flags&(header.TCPFlagSyn|header.TCPFlagRst) != 0 {
		return b[:n]
	}
	k := e.ooo.blocks(sackRoom(n))
	if payloadLen > 0 {
		k = min(k, (e.sndMSS-payloadLen-sackOptionOverhead)/sackBlockSize)
	}
	if k <= 0 {
		return b[:n]
	}
	var blocks [header.TCPMaxSACKBlocks]header.SACKBlock
	k = e.ooo.sackBlocks(blocks[:k])
	if e.ooo.dsackSet && k > 0 {
		e.ooo.dsackSet = false
	}
	// Two NOPs keep the blocks 4-byte aligned (RFC 2018 3: the option
	// takes 8n+2 bytes).
	n += header.EncodeNOP(b[n:])
	n += header.EncodeNOP(b[n:])
	n += header.EncodeSACKBlocks(blocks[:k], b[n:])
	return b[:n]
}

// The SACK option's size (RFC 2018 3): 8 bytes a block, and beyond them
// two NOPs for alignment, kind and length.
const (
	sackBlockSize      = 8
	sackOptionOverhead = 4
)

// sackRoom is how many SACK blocks fit beside used bytes of other options:
// 4 alone, 3 beside the 12 bytes of the TSopt.
func sackRoom(used int) int {
	return (header.TCPOptionsMaximumSize - used - sackOptionOverhead) / sackBlockSize
}

// sackOptionSize is how many bytes the SACK option, its NOPs included,
// would take on the next segment we send: 0 when there is nothing to
// report. A data segment fits its blocks if its text is at most sndMSS
// minus this (Linux's tcp_current_mss, which counts eff_sacks).
func (e *Endpoint) sackOptionSize() int {
	if !e.sackOK {
		return 0
	}
	used := 0
	if e.tsOK {
		used = tsOptionSize
	}
	k := e.ooo.blocks(sackRoom(used))
	if k == 0 {
		return 0
	}
	return sackOptionOverhead + k*sackBlockSize
}
