package tcp

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// FuzzOptions parses arbitrary option lists, on a SYN, a SYN-ACK and any
// other segment, and compares the result with a walk written from the
// RFCs (fzWalkOptions). Nothing may panic on any list, truncated or with
// illegal lengths (RFC 9293 3.1: "MUST be prepared to handle an illegal
// option length"). On a list whose options are well formed:
//
//   - a SYN yields its MSS (RFC 9293 3.7.1; values under 48 may read as
//     48, Linux's tcp_min_snd_mss), its window scale capped at 14 (RFC 7323
//     2.3: "MUST use 14 instead"), SACK-permitted (RFC 2018 2), the TSopt
//     with TSecr read only on a SYN-ACK (RFC 7323 3.2), and no SACK blocks;
//   - any other segment yields its TSopt and its SACK blocks (RFC 2018
//     3: kind 5, length 8n+2), at most four, and no MSS or window scale
//     (RFC 7323 2.2: a window scale off a SYN is ignored).
//
// On any list: parseTimestamp finds the TSopt a non-SYN segment's parse
// finds, a window scale is -1 or 0..14, there are at most four SACK
// blocks, each read from the option bytes, and the segment prints.
func FuzzOptions(f *testing.F) {
	for _, o := range fzOptionSeeds {
		for _, fl := range []header.TCPFlags{header.TCPFlagSyn, header.TCPFlagSyn | header.TCPFlagAck, header.TCPFlagAck} {
			f.Add(o, uint8(fl))
		}
	}
	f.Fuzz(func(t *testing.T, opts []byte, flags uint8) {
		fzCheckOptions(t, opts, header.TCPFlags(flags))
	})
}

// FuzzOptionSeedFiles are the seeds committed as files (the rest are
// only f.Add'ed): Linux's SYN, one per option kind tapstack reads, and the
// malformed lists. Exported for fuzz_seeds_test.go.
var FuzzOptionSeedFiles = map[string]struct {
	Opts  []byte
	Flags uint8
}{
	"linux-syn":                {[]byte{2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}, uint8(header.TCPFlagSyn)},
	"synack-ws-15":             {[]byte{2, 4, 5, 180, 1, 3, 3, 15}, uint8(header.TCPFlagSyn | header.TCPFlagAck)},
	"ack-ts":                   {[]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, uint8(header.TCPFlagAck)},
	"ack-ts-3-sack-blocks":     {[]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6}, uint8(header.TCPFlagAck)},
	"ack-sack-before-nops":     {[]byte{5, 10, 8, 0, 0, 1, 8, 0, 0, 2, 1, 1}, uint8(header.TCPFlagAck)},
	"syn-mss-0":                {[]byte{2, 4, 0, 0}, uint8(header.TCPFlagSyn)},
	"syn-length-0":             {[]byte{9, 0, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, uint8(header.TCPFlagSyn)},
	"ack-sack-length-past-end": {[]byte{5, 42}, uint8(header.TCPFlagAck)},
}

// fzOptionSeeds: every option kind tapstack reads, in the layouts TCPs
// send, and the malformed lists a parser must survive.
var fzOptionSeeds = [][]byte{
	{},
	{0},                                   // EOL
	{1, 1, 1, 1},                          // NOPs
	{2, 4, 5, 180},                        // MSS 1460
	{2, 4, 0, 0},                          // MSS 0
	{2, 4, 0, 1},                          // MSS 1
	{2, 4, 0xff, 0xff},                    // MSS 65535
	{1, 3, 3, 7},                          // NOP, WS 7
	{1, 3, 3, 14},                         // WS 14
	{1, 3, 3, 15},                         // WS 15: use 14
	{1, 3, 3, 255},                        // WS 255
	{1, 1, 4, 2},                          // SACK-permitted
	{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, // NOP NOP TS, Linux's layout
	{8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}, // TS without NOPs
	{2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}, // Linux's SYN
	{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2},                           // one SACK block
	{5, 10, 8, 0, 0, 1, 8, 0, 0, 2, 1, 1},                           // a SACK block starting with 0x08, then NOPs
	{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6}, // TS and 3 blocks
	{5, 34, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8},                    // 4 blocks
	{5, 42},                               // 5 blocks claimed, none there
	{5, 9, 0, 0, 0, 1, 0, 0, 0},           // length not 8n+2
	{5, 2},                                // SACK without blocks
	{28, 4, 0, 100},                       // user timeout (RFC 5482)
	{29, 4, 1, 2},                         // TCP-AO (RFC 5925), truncated
	{30, 4, 0, 0},                         // MPTCP
	{34, 2},                               // TFO cookie request (RFC 7413)
	{254, 6, 0xf9, 0x89, 0, 0},            // experimental (RFC 6994)
	{2},                                   // kind without length
	{2, 4, 5},                             // truncated MSS
	{8, 10, 0, 0, 0, 1},                   // truncated TS
	{3, 3},                                // truncated WS
	{9, 0, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, // length 0
	{9, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, // length 1
	{9, 40},                               // length past the end
	{2, 3, 1, 3, 3, 7},                    // MSS with length 3
	{8, 9, 0, 0, 0, 1, 0, 0, 0, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9}, // TS of length 9, then a good one
	{2, 4, 5, 180, 2, 4, 2, 0},                                    // MSS twice
}

// fzOption is one option of a walked list.
type fzOption struct {
	kind byte
	body []byte // after kind and length
}

// fzWalkOptions walks an option list as RFC 9293 3.1 lays it out: EOL
// ends the list, NOP is one byte, every other option is kind, length
// (counting both) and body. It returns the options before the first that
// is malformed (length under 2 or past the end), and whether one was.
func fzWalkOptions(b []byte) (opts []fzOption, malformed bool) {
	for i := 0; i < len(b); {
		switch b[i] {
		case header.TCPOptionEOL:
			return opts, false
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(b) || b[i+1] < 2 || i+int(b[i+1]) > len(b) {
			return opts, true
		}
		opts = append(opts, fzOption{kind: b[i], body: b[i+2 : i+int(b[i+1])]})
		i += int(b[i+1])
	}
	return opts, false
}

// fzWellFormed reports whether every option tapstack reads has its
// RFC's length and appears once, and an MSS is not 0.
func fzWellFormed(opts []fzOption) bool {
	seen := make(map[byte]bool)
	for _, o := range opts {
		n := len(o.body) + 2
		switch o.kind {
		case header.TCPOptionMSS:
			if n != 4 || binary.BigEndian.Uint16(o.body) == 0 {
				return false
			}
		case header.TCPOptionWS:
			if n != 3 {
				return false
			}
		case header.TCPOptionSACKPermitted:
			if n != 2 {
				return false
			}
		case header.TCPOptionTS:
			if n != 10 {
				return false
			}
		case header.TCPOptionSACK:
			if n < 10 || (n-2)%8 != 0 {
				return false
			}
		default:
			continue
		}
		if seen[o.kind] {
			return false
		}
		seen[o.kind] = true
	}
	return true
}

// fzCount counts the options of kind and length n.
func fzCount(opts []fzOption, kind byte, n int) int {
	c := 0
	for _, o := range opts {
		if o.kind == kind && len(o.body)+2 == n {
			c++
		}
	}
	return c
}

func fzFind(opts []fzOption, kind byte) (fzOption, bool) {
	for _, o := range opts {
		if o.kind == kind {
			return o, true
		}
	}
	return fzOption{}, false
}

func fzCheckOptions(t *testing.T, opts []byte, flags header.TCPFlags) {
	if len(opts) > header.TCPOptionsMaximumSize {
		opts = opts[:header.TCPOptionsMaximumSize]
	}
	// The helpers on the list as it is, of any length: a truncated option
	// at the very end included.
	parseTimestamp(opts)
	hasMSSOption(opts)

	// The header parse, on the list padded with EOL to a header's length.
	hdrLen := header.TCPMinimumSize + (len(opts)+3)&^3
	h := header.TCP(make([]byte, hdrLen))
	h.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1, AckNum: 2, DataOffset: uint8(hdrLen), Flags: flags, WindowSize: 100})
	copy(h[header.TCPMinimumSize:], opts)
	var s segment
	s.parseHeader(h)
	_ = s.String()
	val, ecr, tsOK := parseTimestamp(h.Options())

	if s.WS < -1 || s.WS > header.MaxWndScale {
		t.Fatalf("% x: window scale %d", opts, s.WS)
	}
	if s.nsack < 0 || s.nsack > header.TCPMaxSACKBlocks {
		t.Fatalf("% x: %d SACK blocks", opts, s.nsack)
	}
	syn := flags&header.TCPFlagSyn != 0
	walked, malformed := fzWalkOptions(h.Options())
	if !syn {
		// With two TSopts, parseTimestamp takes the first and the walk
		// the last, as Linux's tcp_parse_options: either will do.
		if fzCount(walked, header.TCPOptionTS, 10) <= 1 && (s.TS != tsOK || (tsOK && (s.TSVal != val || s.TSEcr != ecr))) {
			t.Fatalf("% x: the segment's TSopt (%v %d %d) is not parseTimestamp's (%v %d %d)", opts, s.TS, s.TSVal, s.TSEcr, tsOK, val, ecr)
		}
		for _, b := range s.sack[:s.nsack] {
			if !fzBlockIn(h.Options(), b) {
				t.Fatalf("% x: SACK block %d:%d is not in the options", opts, b.Start, b.End)
			}
		}
	}

	if malformed || !fzWellFormed(walked) {
		return
	}
	ts, hasTS := fzFind(walked, header.TCPOptionTS)
	if s.TS != hasTS {
		t.Fatalf("% x: TSopt found %v, want %v", opts, s.TS, hasTS)
	}
	if hasTS {
		wantVal, wantEcr := binary.BigEndian.Uint32(ts.body), binary.BigEndian.Uint32(ts.body[4:])
		if s.TSVal != wantVal {
			t.Fatalf("% x: TSval %d, want %d", opts, s.TSVal, wantVal)
		}
		// RFC 7323 3.2: TSecr counts only with ACK.
		if flags&header.TCPFlagAck != 0 && s.TSEcr != wantEcr {
			t.Fatalf("% x: TSecr %d, want %d", opts, s.TSEcr, wantEcr)
		}
	}
	if !syn {
		var want []header.SACKBlock
		if o, ok := fzFind(walked, header.TCPOptionSACK); ok {
			for j := 0; j+8 <= len(o.body) && len(want) < header.TCPMaxSACKBlocks; j += 8 {
				want = append(want, header.SACKBlock{
					Start: seqnum.Value(binary.BigEndian.Uint32(o.body[j:])),
					End:   seqnum.Value(binary.BigEndian.Uint32(o.body[j+4:])),
				})
			}
		}
		if got := s.sack[:s.nsack]; !equalBlocks(got, want) {
			t.Fatalf("% x: SACK blocks %v, want %v", opts, got, want)
		}
		if s.MSS != 0 || s.WS != -1 || s.SACKPermitted {
			t.Fatalf("% x: MSS %d, WS %d, SACK-permitted %v read off a SYN", opts, s.MSS, s.WS, s.SACKPermitted)
		}
		return
	}
	if s.nsack != 0 {
		t.Fatalf("% x: SACK blocks read on a SYN", opts)
	}
	wantMSS := uint16(0)
	if o, ok := fzFind(walked, header.TCPOptionMSS); ok {
		wantMSS = binary.BigEndian.Uint16(o.body)
	}
	if s.MSS != wantMSS && !(wantMSS < header.TCPMinimumSendMSS && s.MSS == header.TCPMinimumSendMSS) {
		t.Fatalf("% x: MSS %d, want %d", opts, s.MSS, wantMSS)
	}
	wantWS := -1
	if o, ok := fzFind(walked, header.TCPOptionWS); ok {
		wantWS = min(int(o.body[0]), header.MaxWndScale)
	}
	if s.WS != wantWS {
		t.Fatalf("% x: window scale %d, want %d", opts, s.WS, wantWS)
	}
	if _, ok := fzFind(walked, header.TCPOptionSACKPermitted); s.SACKPermitted != ok {
		t.Fatalf("% x: SACK-permitted %v, want %v", opts, s.SACKPermitted, ok)
	}
}

func equalBlocks(a, b []header.SACKBlock) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fzBlockIn reports whether the 8 bytes of b appear in opts.
func fzBlockIn(opts []byte, b header.SACKBlock) bool {
	var w [8]byte
	binary.BigEndian.PutUint32(w[:], uint32(b.Start))
	binary.BigEndian.PutUint32(w[4:], uint32(b.End))
	for i := 0; i+8 <= len(opts); i++ {
		if [8]byte(opts[i:i+8]) == w {
			return true
		}
	}
	return false
}

// TestOptionParseAllocs: parsing a segment's options does not allocate
// (segment.go promises it), for every seed list.
func TestOptionParseAllocs(t *testing.T) {
	for _, o := range fzOptionSeeds {
		for _, fl := range []header.TCPFlags{header.TCPFlagSyn, header.TCPFlagAck} {
			hdrLen := header.TCPMinimumSize + (len(o)+3)&^3
			h := header.TCP(make([]byte, hdrLen))
			h.Encode(&header.TCPFields{DataOffset: uint8(hdrLen), Flags: fl})
			copy(h[header.TCPMinimumSize:], o)
			var s segment
			if n := testing.AllocsPerRun(10, func() { s = segment{}; s.parseHeader(h) }); n != 0 {
				t.Errorf("% x, flags %v: %v allocations per parse", o, fl, n)
			}
		}
	}
}

// TestSACKBlockBeforeNOPs: twelve option bytes that are one SACK block
// followed by two NOPs are a SACK option, also when the block's first
// byte is 8, the Timestamps kind. Found by FuzzOptions: parseHeader took
// any 12-byte list with an 8 at offset 2 for Linux's NOP NOP TS layout and
// dropped the block. RFC 2018 3 allows the options in any order.
func TestSACKBlockBeforeNOPs(t *testing.T) {
	opts := []byte{5, 10, 8, 0, 0, 1, 8, 0, 0, 2, 1, 1}
	h := header.TCP(make([]byte, header.TCPMinimumSize+len(opts)))
	h.Encode(&header.TCPFields{DataOffset: uint8(len(h)), Flags: header.TCPFlagAck})
	copy(h[header.TCPMinimumSize:], opts)
	var s segment
	s.parseHeader(h)
	want := header.SACKBlock{Start: 0x08000001, End: 0x08000002}
	if s.nsack != 1 || s.sack[0] != want || s.TS {
		t.Fatalf("parsed %d SACK blocks %v, TSopt %v; want [%v] and no TSopt", s.nsack, s.sack[:s.nsack], s.TS, want)
	}
}
