package pcap

import (
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapstack/tapstack/stack/tcp"
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
	Time      time.Time
	Data      []byte // the captured bytes
	Length    int    // the frame's length on the wire
	Direction Direction
	Comments  []string
}

// Comment returns the packet's comments joined with "; ".
func (p Packet) Comment() string { return strings.Join(p.Comments, "; ") }

// TCP returns the connection (from the capturing stack's viewpoint) and
// the wire key of the TCP segment in the frame, if it carries one.
func (p Packet) TCP() (tcp.ConnID, tcp.SegKey, bool) {
	return parseFrame(p.Data, p.Direction == Outbound)
}

// ReadAll reads every packet of a pcapng stream, for tests and tools.
func ReadAll(r io.Reader) ([]Packet, error) {
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
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
		p := Packet{Time: ci.Timestamp, Data: data, Length: ci.Length, Comments: opts.Comments}
		if opts.Flags != nil {
			switch opts.Flags.Direction & pcapgo.NgEpbFlagDirectionMask {
			case pcapgo.NgEpbFlagDirectionInbound:
				p.Direction = Inbound
			case pcapgo.NgEpbFlagDirectionOutbound:
				p.Direction = Outbound
			}
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
