package plot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapstack/tapstack/pcap"
)

// Reading a capture: pcapng (tapstack's, Wireshark's, tcpdump --pcapng)
// or classic pcap (tcpdump -w), on Ethernet, Linux cooked (tcpdump -i
// any) or raw IP links. Only TCP frames are decoded; the rest are counted.

// Direction of a frame as the capture records it (pcapng epb_flags).
const (
	dirUnknown = 0
	dirIn      = 1
	dirOut     = 2
)

// frame is one captured TCP segment, decoded.
type frame struct {
	no       int // Wireshark's frame number
	t        time.Time
	dir      uint8 // dirIn, dirOut or dirUnknown
	comment  string
	dropped  bool // epb_verdict TC_ACT_SHOT: the engine or a fault dropped it
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	win      uint16
	plen     int
	ws       int8 // window scale option (SYN), -1 if none
	mss      int
	sack     [][2]uint32
	// What tells a copy the network made from a segment sent again: the
	// IPv4 identification and the timestamps option, the same in a copy.
	ipID         uint16
	v4, ts       bool
	tsVal, tsEcr uint32
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

func (f *frame) has(fl uint8) bool { return f.flags&fl != 0 }

// capture is what a capture file holds for plotting.
type capture struct {
	frames    []frame
	others    int // frames that are not TCP (ARP, ICMP, UDP, ...)
	events    []pcap.EventRecord
	notes     []pcap.Note
	commented bool // some frame has a comment
	directed  bool // some frame has a direction
	// cut is the number of the frame the file ends inside, 0 if none:
	// the capture was cut short (its writer stopped before it closed
	// the file), and the frames before it are read.
	cut int
}

// maxCapture bounds the bytes read from one capture (8 GiB): a plot
// holds the decoded segments in memory.
const maxCapture = 8 << 30

// readCapture reads a pcapng or pcap stream.
func readCapture(r io.Reader) (*capture, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCapture+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCapture {
		return nil, fmt.Errorf("plot: capture larger than %d bytes", maxCapture)
	}
	if len(b) < 4 {
		return nil, errors.New("plot: not a capture file (too short)")
	}
	c := &capture{}
	dec := newDecoder()
	if binary.LittleEndian.Uint32(b) == 0x0A0D0D0A {
		if err := c.readNg(b, dec); err != nil {
			return nil, err
		}
		// tapstack's machine-readable events and notes, if any; in a
		// capture cut short, those before the cut.
		if c.events, err = pcap.ReadEvents(bytes.NewReader(b)); err != nil && c.cut == 0 {
			return nil, fmt.Errorf("plot: reading events: %w", err)
		}
		if c.notes, err = pcap.ReadNotes(bytes.NewReader(b)); err != nil && c.cut == 0 {
			return nil, fmt.Errorf("plot: reading notes: %w", err)
		}
		return c, nil
	}
	pr, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("plot: not a pcapng or pcap file: %w", err)
	}
	lt := pr.LinkType()
	for n := 1; ; n++ {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && n > 1 {
			c.cut = n
			return c, nil
		}
		if err != nil {
			return c, fmt.Errorf("plot: frame %d: %w", n, err)
		}
		c.add(dec, lt, frame{no: n, t: ci.Timestamp}, data)
	}
}

func (c *capture) readNg(b []byte, dec *decoder) error {
	numbers := pcap.FrameNumbers(b)
	ng, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for i := 0; ; i++ {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && i > 0 {
			// The file ends inside a block after whole frames, as when
			// its writer was killed: those frames are the capture.
			c.cut = i + 1
			return nil
		}
		if err != nil {
			return fmt.Errorf("plot: frame %d: %w", i+1, err)
		}
		f := frame{no: i + 1, t: ci.Timestamp, comment: strings.Join(opts.Comments, "; ")}
		if i < len(numbers) {
			f.no = numbers[i]
		}
		if opts.Flags != nil {
			switch opts.Flags.Direction & pcapgo.NgEpbFlagDirectionMask {
			case pcapgo.NgEpbFlagDirectionInbound:
				f.dir = dirIn
			case pcapgo.NgEpbFlagDirectionOutbound:
				f.dir = dirOut
			}
		}
		for _, v := range opts.Verdicts {
			// TC_ACT_SHOT (2) in a Linux eBPF TC verdict: dropped.
			if v.Type == pcapgo.NgEpbVerdictTypeLinuxeBPFTC && len(v.Data) == 8 && binary.LittleEndian.Uint64(v.Data) == 2 {
				f.dropped = true
			}
		}
		lt := layers.LinkTypeEthernet
		if iface, err := ng.Interface(ci.InterfaceIndex); err == nil {
			lt = iface.LinkType
		}
		c.add(dec, lt, f, data)
	}
}

// add decodes data and keeps it if it is a TCP segment.
func (c *capture) add(dec *decoder, lt layers.LinkType, f frame, data []byte) {
	if f.comment != "" {
		c.commented = true
	}
	if f.dir != dirUnknown {
		c.directed = true
	}
	if !dec.decode(lt, data, &f) {
		c.others++
		return
	}
	c.frames = append(c.frames, f)
}

// decoder decodes link, IP and TCP headers with gopacket's
// DecodingLayerParser, without allocating per frame.
type decoder struct {
	eth    layers.Ethernet
	dot1q  layers.Dot1Q
	sll    layers.LinuxSLL
	ip4    layers.IPv4
	ip6    layers.IPv6
	tcp    layers.TCP
	parser map[gopacket.LayerType]*gopacket.DecodingLayerParser
	found  []gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{parser: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.sll, &d.ip4, &d.ip6, &d.tcp)
		p.IgnoreUnsupported = true
		d.parser[first] = p
	}
	return d
}

func (d *decoder) decode(lt layers.LinkType, data []byte, f *frame) bool {
	var first gopacket.LayerType
	switch lt {
	case layers.LinkTypeEthernet:
		first = layers.LayerTypeEthernet
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeLinuxSLL2:
		if len(data) < 20 {
			return false
		}
		data = data[20:] // the SLL2 header; the protocol follows
		fallthrough
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		if len(data) == 0 {
			return false
		}
		switch data[0] >> 4 {
		case 4:
			first = layers.LayerTypeIPv4
		case 6:
			first = layers.LayerTypeIPv6
		default:
			return false
		}
	default:
		return false
	}
	d.found = d.found[:0]
	_ = d.parser[first].DecodeLayers(data, &d.found)
	var src, dst netip.Addr
	ipLen := -1 // bytes after the IP header, from the header (the frame may be cut short)
	gotIP, gotTCP := false, false
	for _, l := range d.found {
		switch l {
		case layers.LayerTypeIPv4:
			if d.ip4.FragOffset != 0 || d.ip4.Flags&layers.IPv4MoreFragments != 0 {
				return false
			}
			src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
			ipLen = int(d.ip4.Length) - int(d.ip4.IHL)*4
			f.ipID, f.v4 = d.ip4.Id, true
			gotIP = true
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			ipLen = -1
			if d.ip6.NextHeader == layers.IPProtocolTCP {
				ipLen = int(d.ip6.Length) // no extension headers before TCP
			}
			gotIP = true
		case layers.LayerTypeTCP:
			gotTCP = true
		}
	}
	if !gotIP || !gotTCP {
		return false
	}
	t := &d.tcp
	f.src = netip.AddrPortFrom(src, uint16(t.SrcPort))
	f.dst = netip.AddrPortFrom(dst, uint16(t.DstPort))
	f.seq, f.ack, f.win = t.Seq, t.Ack, t.Window
	// The payload's length from the headers: a capture with a snap
	// length keeps only the first bytes of each frame.
	f.plen = len(t.Payload)
	if n := ipLen - int(t.DataOffset)*4; ipLen >= 0 && n >= 0 {
		f.plen = n
	}
	var fl uint8
	for _, b := range []struct {
		on bool
		f  uint8
	}{{t.FIN, flagFIN}, {t.SYN, flagSYN}, {t.RST, flagRST}, {t.PSH, flagPSH}, {t.ACK, flagACK}} {
		if b.on {
			fl |= b.f
		}
	}
	f.flags = fl
	f.ws = -1
	for _, o := range t.Options {
		switch o.OptionType {
		case layers.TCPOptionKindWindowScale:
			if len(o.OptionData) == 1 {
				f.ws = int8(min(o.OptionData[0], 14)) // RFC 7323 2.3: at most 14
			}
		case layers.TCPOptionKindMSS:
			if len(o.OptionData) == 2 {
				f.mss = int(binary.BigEndian.Uint16(o.OptionData))
			}
		case layers.TCPOptionKindTimestamps:
			if len(o.OptionData) == 8 {
				f.ts, f.tsVal, f.tsEcr = true, binary.BigEndian.Uint32(o.OptionData), binary.BigEndian.Uint32(o.OptionData[4:])
			}
		case layers.TCPOptionKindSACK:
			for b := o.OptionData; len(b) >= 8 && len(f.sack) < 4; b = b[8:] {
				f.sack = append(f.sack, [2]uint32{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])})
			}
		}
	}
	return true
}
