package pcap

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// Offloads. A TAP device with offloads (tap.WithOffloads) carries TCP
// super-frames: one segment of up to 64 KiB that stands for several wire
// segments of its MSS, from the kernel's TSO on the way in (delivered
// whole with tap.WithGRO), from gVisor's GSO on the way out. The link
// says so in the packet's GSO options. A capture shows what a wire would
// have carried: each super-frame is written as its wire segments, cut as
// the kernel cuts them (tap.WireSegments), checksums filled in; the first
// carries the comment, prefixed "TSO 44×1448 of 63,712 B", the others
// "TSO 2/44 of frame 17"; each is a packet of its own (epb_packetid), which
// a later retransmission of its range shares. Options.SuperFrames writes
// it whole instead.
// A device without offloads joins the segments it reads (its GRO,
// tap.JoinsSegments); its super-frames are written the same way, named
// "GRO" instead: the wire carried those segments one by one.
//
// The kernel also hands over frames whose checksum it left partial (it
// offloaded it to the "NIC", and the frame never crossed a wire); the
// device marks them RXChecksumValidated, and the capture fills the
// checksum in. So it does for the stack's own segments of one wire
// segment whose checksum it left to the link (GSO's NeedsCsum).

// noteOffload reads what the link said of the frame in r: a super-frame
// is marked to be written as its wire segments, and a partial checksum
// the link vouched for, or was asked to finish, is filled in. It runs
// after r's fingerprint was taken, since the fault middleware below saw
// the bytes unfilled.
func (w *Writer) noteOffload(r *record, pkt *stack.PacketBuffer) {
	g := pkt.GSOOptions
	if (g.Type == stack.GSOTCPv4 || g.Type == stack.GSOTCPv6) && g.MSS > 0 && r.fi.kind == kindTCP && r.fi.key.Len > int(g.MSS) {
		if n, err := tap.SegmentCount(r.data, int(g.MSS)); err == nil {
			r.mss = int(g.MSS)
			r.segs = n
			if w.opts.SuperFrames {
				r.segs = 1
			}
			return
		}
	}
	// In, a partial checksum the link vouched for; out, one the stack
	// left for the link to finish (a segment on a link with offloads:
	// tapstack's, gVisor's and Linux's TCP leave every one so).
	if r.dir == dirIn && pkt.RXChecksumValidated || r.dir == dirOut && g.NeedsCsum {
		tap.FillChecksum(r.data)
	}
}

// noteLostOffload marks r, an inbound frame a fault middleware below lost
// before the stack saw it, to be written as its wire segments when it is a
// super-frame (the fault's report gives its MSS), as noteOffload marks one
// the stack was given: one wire segment per captured frame.
func (w *Writer) noteLostOffload(r *record, mss int) {
	if mss <= 0 || r.fi.kind != kindTCP || r.fi.key.Len <= mss {
		return
	}
	if n, err := tap.SegmentCount(r.data, mss); err == nil {
		r.mss, r.segs = mss, n
		if w.opts.SuperFrames {
			r.segs = 1
		}
	}
}

// writeSuperLocked writes super-frame r: as its wire segments, or whole
// with Options.SuperFrames. w.mu is held.
func (w *Writer) writeSuperLocked(r *record, comment string) {
	n, _ := tap.SegmentCount(r.data, r.mss)
	name := "TSO"
	if r.dir == dirIn && w.joins {
		name = "GRO" // the device joined segments that came one by one
	}
	head := fmt.Sprintf("%s %d×%d of %s B", name, n, r.mss, thousands(r.fi.key.Len))
	if comment != "" {
		head += "; " + comment
	}
	w.stats.SuperFrames++
	if w.opts.SuperFrames {
		w.writeEPBLocked(r, r.data, r.length, head, r.packetID)
		return
	}
	i := 0
	dropCount := r.dropCount
	err := tap.WireSegments(r.data, r.mss, func(seg []byte) {
		c := head
		if i > 0 {
			c = fmt.Sprintf("%s %d/%d of frame %d", name, i+1, n, r.no)
			r.dropCount = 0 // told once, on the first
		}
		// Each wire segment is a packet of its own, with its own id
		// (wireFacts): a retransmission of its range shares it.
		id := r.packetID
		if i < len(r.segIDs) {
			id = r.segIDs[i]
		}
		w.writeEPBLocked(r, seg, len(seg), c, id)
		i++
	})
	r.dropCount = dropCount
	if err != nil {
		// noteOffload checked it; write it whole rather than lose it.
		w.writeEPBLocked(r, r.data, r.length, head, r.packetID)
	}
}

// thousands formats n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// splitOutbound captures an outbound super-frame that the stack built
// itself (its TCP's GSO: tapstack's engine sends its trains so) as the
// wire segments the link will cut it into, each its own record from the
// start: the engine reports each wire segment in its own event, which
// then finds its frame by its own key. The first names the offload. It
// reports whether pkt was such a frame, and appends the records it put
// in the window to added; with Options.SuperFrames it is left whole.
func (w *Writer) splitOutbound(now time.Time, pkt *stack.PacketBuffer, added []*record) ([]*record, bool) {
	g := pkt.GSOOptions
	if w.opts.SuperFrames || (g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6) || g.MSS == 0 {
		return added, false
	}
	whole := w.copyFrame(pkt)
	defer w.putBuf(whole)
	fi := parseFrame(whole, true)
	if fi.kind != kindTCP || fi.key.Len <= int(g.MSS) {
		return added, false
	}
	n, err := tap.SegmentCount(whole, int(g.MSS))
	if err != nil {
		return added, false
	}
	// A fault middleware below sees the super-frame, and reports on
	// it by its bytes: each wire segment takes its fingerprint, and the
	// first stands for them all (annotator.fault).
	var fp uint64
	if w.faults.Load() {
		fp = maphash.Bytes(w.seed, whole)
	}
	var recs []*record
	err = tap.WireSegments(whole, int(g.MSS), func(seg []byte) {
		b := append(w.getBuf(), seg...)
		r := &record{ts: now, dir: dirOut, data: b, length: len(b), fi: parseFrame(b, true), fp: fp}
		if len(recs) > 0 {
			r.train = recs[0]
		} else {
			r.train = r
		}
		recs = append(recs, r)
	})
	if err != nil || len(recs) == 0 {
		for _, r := range recs {
			w.putBuf(r.data)
		}
		return added, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, r := range recs {
		if w.stopped {
			w.stats.Skipped++
			w.putBuf(r.data)
			continue
		}
		w.noteLinkDropsLocked(r)
		w.ann.addFrame(now, r)
		added = append(added, r)
		if i == 0 {
			r.offload = fmt.Sprintf("TSO %d×%d of %s B", n, g.MSS, thousands(fi.key.Len))
			w.stats.SuperFrames++
		} else {
			r.offload = fmt.Sprintf("TSO %d/%d of frame %d", i+1, n, recs[0].no)
		}
	}
	w.flushLocked(now, false)
	return added, true
}
