package tcp

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
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

// maxSACKRanges bounds the scoreboard. A window with more holes than this
// is rare; when it happens the range with the highest sequence numbers is
// forgotten (see add).
const maxSACKRanges = 32

// scoreboard is the data sender's record of what the peer SACKed (RFC
// 6675 3): ranges [Start, End) above SND.UNA, sorted, disjoint and not
// touching. Forgetting a range is always safe: its bytes count as not
// received, so at worst they are sent again (RFC 2018 8 lets the receiver
// renege anyway). Marking bytes SACKed that were not is never done.
type scoreboard struct {
	r [maxSACKRanges]header.SACKBlock
	n int
}

func (b *scoreboard) clear() { b.n = 0 }

func (b *scoreboard) ranges() []header.SACKBlock { return b.r[:b.n] }

// add records [start, end) as SACKed and returns how many bytes were not
// SACKed before: more than zero means the block carried new information.
// Ranges it overlaps or touches merge with it. When the board is full, the
// range with the highest sequence numbers is dropped: the receiver reports
// its latest arrivals first (RFC 2018 4), so that is the one most likely
// to be reported again.
func (b *scoreboard) add(start, end seqnum.Value) uint32 {
	// i: first range that ends at or after start; j: first range that
	// begins after end. Ranges i..j-1 overlap or touch [start, end).
	i := 0
	for i < b.n && b.r[i].End.LessThan(start) {
		i++
	}
	j := i
	old := uint32(0)
	for j < b.n && b.r[j].Start.LessThanEq(end) {
		old += uint32(b.r[j].Start.Size(b.r[j].End))
		if b.r[j].Start.LessThan(start) {
			start = b.r[j].Start
		}
		if end.LessThan(b.r[j].End) {
			end = b.r[j].End
		}
		j++
	}
	added := uint32(start.Size(end)) - old
	if i < j {
		// Replace ranges i..j-1 with the merged one.
		b.r[i] = header.SACKBlock{Start: start, End: end}
		copy(b.r[i+1:], b.r[j:b.n])
		b.n -= j - i - 1
		return added
	}
	if b.n == len(b.r) {
		if i == b.n {
			return 0 // the new block would be the highest: drop it
		}
		b.n-- // drop the highest range to make room
	}
	copy(b.r[i+1:b.n+1], b.r[i:b.n])
	b.r[i] = header.SACKBlock{Start: start, End: end}
	b.n++
	return added
}

// trim forgets everything below una, the new SND.UNA.
func (b *scoreboard) trim(una seqnum.Value) {
	k := 0
	for k < b.n && b.r[k].End.LessThanEq(una) {
		k++
	}
	if k > 0 {
		copy(b.r[:], b.r[k:b.n])
		b.n -= k
	}
	if b.n > 0 && b.r[0].Start.LessThan(una) {
		b.r[0].Start = una
	}
}

// sackedIn returns how many bytes of [a, z) are SACKed.
func (b *scoreboard) sackedIn(a, z seqnum.Value) uint32 {
	n := uint32(0)
	for _, r := range b.ranges() {
		s, t := r.Start, r.End
		if s.LessThan(a) {
			s = a
		}
		if z.LessThan(t) {
			t = z
		}
		if s.LessThan(t) {
			n += uint32(s.Size(t))
		}
	}
	return n
}

// hole finds the first byte at or after from that is not SACKed but has
// SACKed data above it, and where that hole ends (the next range's Start).
func (b *scoreboard) hole(from seqnum.Value) (start, end seqnum.Value, ok bool) {
	for _, r := range b.ranges() {
		if from.LessThan(r.Start) {
			return from, r.Start, true
		}
		if from.LessThan(r.End) {
			from = r.End
		}
	}
	return 0, 0, false
}

// lostEdge is where RFC 6675's IsLost stops holding: a byte not SACKed
// below the returned sequence number is lost, one above it is not. IsLost
// (RFC 6675 4) holds for SeqNum when DupThresh discontiguous SACKed ranges
// lie above it, or more than (DupThresh-1)*SMSS SACKed bytes. Both counts
// only grow as SeqNum goes down, so walking the ranges from the top finds
// the edge. ok is false when nothing is lost.
func (b *scoreboard) lostEdge(dupThresh int, mss uint32) (edge seqnum.Value, ok bool) {
	bytes := uint32(0)
	for i := b.n - 1; i >= 0; i-- {
		bytes += uint32(b.r[i].Start.Size(b.r[i].End))
		if bytes > uint32(dupThresh-1)*mss || b.n-i >= dupThresh {
			return b.r[i].Start, true
		}
	}
	return 0, false
}

// takeSACK validates the SACK blocks of an acceptable ACK and records them
// in the scoreboard, after SND.UNA has moved. A block counts only if it
// lies within [SND.UNA, SND.MAX] with Start < End (RFC 2018 3, and RFC
// 5961's spirit: a block for data never sent is a lie or a mistake);
// D-SACK blocks (RFC 2883), which report data below SND.UNA received
// twice, are ignored. It reports whether any block SACKed new bytes,
// which is RFC 6675's duplicate acknowledgment.
func (e *Endpoint) takeSACK(seg *Segment) bool {
	e.scoreboard.trim(e.SndUna)
	added := uint32(0)
	for _, blk := range seg.sack[:seg.nsack] {
		if !blk.Start.LessThan(blk.End) || blk.Start.LessThan(e.SndUna) || e.sndMax.LessThan(blk.End) {
			continue
		}
		added += e.scoreboard.add(blk.Start, blk.End)
	}
	return added > 0
}

// isLost is RFC 6675's IsLost for a byte not SACKed.
func (e *Endpoint) isLost(seq seqnum.Value) bool {
	edge, ok := e.scoreboard.lostEdge(e.dupThresh(), uint32(e.sndMSS))
	return ok && seq.LessThan(edge)
}

// pipe is RFC 6675's SetPipe, in bytes: of the sequence space between
// SND.UNA and HighData (our SND.NXT), every byte not SACKed counts once if
// it is not lost, and once more if it was retransmitted (it lies below
// HighRxt).
func (e *Endpoint) pipe() uint32 {
	una, high := e.SndUna, e.SndNxt
	if !una.LessThan(high) {
		return 0
	}
	p := uint32(0)
	from := una
	if edge, ok := e.scoreboard.lostEdge(e.dupThresh(), uint32(e.sndMSS)); ok && una.LessThan(edge) {
		from = edge
	}
	if from.LessThan(high) {
		p += uint32(from.Size(high)) - e.scoreboard.sackedIn(from, high)
	}
	if rxt := e.highRxt; una.LessThan(rxt) {
		if high.LessThan(rxt) {
			rxt = high
		}
		p += uint32(una.Size(rxt)) - e.scoreboard.sackedIn(una, rxt)
	}
	return p
}

// nextHole is the retransmission half of RFC 6675's NextSeg: the first
// byte above HighRxt that is not SACKed but has SACKed data above it, as
// a segment of at most one SMSS that stops at the next SACKed range, so
// SACKed data is never sent again. lost says whether rule (1) picks it
// (IsLost); otherwise only rule (3) may.
func (e *Endpoint) nextHole() (seq seqnum.Value, n int, lost, ok bool) {
	from := e.SndUna
	if from.LessThan(e.highRxt) {
		from = e.highRxt
	}
	start, end, ok := e.scoreboard.hole(from)
	if !ok || !start.LessThan(e.SndNxt) {
		return 0, 0, false, false
	}
	if e.SndNxt.LessThan(end) {
		end = e.SndNxt
	}
	if sndEnd := e.sndEnd(); sndEnd.LessThan(end) {
		end = sndEnd // the FIN is never in a hole below SACKed data
	}
	n = min(int(start.Size(end)), e.sndMSS)
	if n <= 0 {
		return 0, 0, false, false
	}
	return start, n, e.isLost(start), true
}

// retransmitHole resends n bytes at seq during SACK recovery and moves
// HighRxt past them (RFC 6675 5 (C.2)). Like fastRetransmit, it counts as
// a fast retransmission and restarts the timer.
func (e *Endpoint) retransmitHole(seq seqnum.Value, n int) {
	e.retransmitted++
	e.proto.stats.Retransmits.Add(1)
	e.rttTiming = false // Karn
	e.transmit(seq, n, false, SendFastRetransmit)
	if end := seq.Add(seqnum.Size(n)); e.highRxt.LessThan(end) {
		e.highRxt = end
	}
	e.setTimer(timerRetransmit, e.rto)
}

// recoveryOutput is RFC 6675 5 step (C): while cwnd - pipe allows a full
// segment, send what NextSeg picks: (1) a lost hole, (2) new data, (3) a
// hole not yet lost. Rule (4), the rescue retransmission, is not done:
// a lost tail is left to the retransmission timer.
func (e *Endpoint) recoveryOutput() {
	mss := uint32(e.sndMSS)
	for range 1 << 16 {
		pipe := e.pipe()
		if e.cwnd < pipe || e.cwnd-pipe < mss {
			return
		}
		seq, n, lost, hole := e.nextHole()
		if hole && lost {
			e.retransmitHole(seq, n)
			continue
		}
		rwnd := 0
		if inflight := uint32(e.SndUna.Size(e.SndNxt)); e.SndWnd > inflight {
			rwnd = int(e.SndWnd - inflight)
		}
		if e.sendNext(min(int(e.cwnd-pipe), rwnd)) {
			continue
		}
		if hole {
			e.retransmitHole(seq, n)
			continue
		}
		return
	}
}
