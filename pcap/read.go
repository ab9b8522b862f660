package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tapstack/tapstack/event"
)

// Direction says which way a captured frame went, as the pcapng
// enhanced packet block's flags word records it.
type Direction uint8

// The directions.
const (
	Unknown Direction = iota
	Inbound
	Outbound
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "in"
	case Outbound:
		return "out"
	}
	return "?"
}

// Packet is one frame read back from a capture.
type Packet struct {
	Number    int // from 1, in the stream read
	Time      time.Time
	Data      []byte // the captured bytes
	Length    int    // the frame's length on the wire
	Direction Direction
	Comments  []string
	Dropped   bool   // epb_verdict says the frame was dropped (TC_ACT_SHOT)
	PacketID  uint64 // epb_packetid: shared by a retransmission and its original
	DropCount uint64 // epb_dropcount: frames the link dropped before this one
}

// Comment returns the packet's comments joined with "; ".
func (p Packet) Comment() string { return strings.Join(p.Comments, "; ") }

// TCP returns the connection (from the capturing stack's viewpoint) and
// the wire key of the TCP segment in the frame, if it carries one.
func (p Packet) TCP() (event.ConnID, event.SegKey, bool) {
	fi := parseFrame(p.Data, p.Direction == Outbound)
	return fi.conn, fi.key, fi.kind == kindTCP
}

// UDP returns the ends (from the capturing stack's viewpoint) and payload
// length of the UDP datagram in the frame, if it carries one.
func (p Packet) UDP() (event.ConnID, int, bool) {
	fi := parseFrame(p.Data, p.Direction == Outbound)
	return fi.conn, fi.key.Len, fi.kind == kindUDP
}

// ReadAll reads every packet of a pcapng stream, for tests and tools.
// Packets are numbered as Wireshark numbers them: tapstack's notes
// (custom blocks, see [ReadNotes]) count as frames.
func ReadAll(r io.Reader) ([]Packet, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	numbers := recordNumbers(b)
	ng, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return nil, err
	}
	var out []Packet
	for {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		n := len(out) + 1
		if len(out) < len(numbers) {
			n = numbers[len(out)]
		}
		p := Packet{Number: n, Time: ci.Timestamp, Data: data, Length: ci.Length, Comments: opts.Comments}
		if opts.Flags != nil {
			switch opts.Flags.Direction & pcapgo.NgEpbFlagDirectionMask {
			case pcapgo.NgEpbFlagDirectionInbound:
				p.Direction = Inbound
			case pcapgo.NgEpbFlagDirectionOutbound:
				p.Direction = Outbound
			}
		}
		for _, v := range opts.Verdicts {
			if v.Type == pcapgo.NgEpbVerdictTypeLinuxeBPFTC && len(v.Data) == 8 && binary.LittleEndian.Uint64(v.Data) == tcActShot {
				p.Dropped = true
			}
		}
		if opts.PacketID != nil {
			p.PacketID = *opts.PacketID
		}
		if opts.DropCount != nil {
			p.DropCount = *opts.DropCount
		}
		out = append(out, p)
	}
}

// ReadFile reads every packet of the pcapng file at path.
func ReadFile(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f)
}

// recordNumbers returns the Wireshark frame number of each enhanced packet
// block in a little-endian pcapng stream: packet and custom blocks count.
func recordNumbers(b []byte) []int {
	var nums []int
	n := 0
	for len(b) >= 12 {
		typ := binary.LittleEndian.Uint32(b[0:4])
		total := int(binary.LittleEndian.Uint32(b[4:8]))
		if total < 12 || total > len(b) {
			break
		}
		switch typ {
		case 6, 3, 2: // enhanced, simple, obsolete packet blocks
			n++
			nums = append(nums, n)
		case customBlockType, 0x40000BAD:
			n++
		}
		b = b[total:]
	}
	return nums
}
