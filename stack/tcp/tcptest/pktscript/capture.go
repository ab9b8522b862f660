package pktscript

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// capture writes a script's exchange as one pcapng section: raw IP frames
// on the script's clock (time 0 is the script's start, 1970-01-01 in
// Wireshark's absolute view), each with the direction and a comment in the
// words of tapstack's capture comments (package pcap), and dropped
// inbound frames marked with the eBPF TC_ACT_SHOT verdict as pcap.Writer
// marks them. Each run writes its own section, so that several scripts
// can share one file.
type capture struct {
	ng  *pcapgo.NgWriter
	err error

	held   []byte // an inbound frame waiting for its comment
	heldAt time.Duration
}

// tcActShot is Linux's TC_ACT_SHOT, the verdict pcap.Writer writes on
// dropped frames.
const tcActShot = 2

func newCapture(w io.Writer, name string, v6 bool) (*capture, error) {
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{
		Name:                "pktscript",
		Description:         name,
		LinkType:            layers.LinkTypeRaw,
		TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "tapstack script", Comment: name}})
	if err != nil {
		return nil, err
	}
	return &capture{ng: ng}, nil
}

func (c *capture) holding() bool { return c.held != nil }

// hold keeps an inbound frame until release gives its comment.
func (c *capture) hold(at time.Duration, b []byte) {
	if c.held != nil {
		c.release("", false)
	}
	c.held, c.heldAt = b, at
}

// release writes the held inbound frame.
func (c *capture) release(comment string, dropped bool) {
	if c.held == nil {
		return
	}
	c.frame(c.heldAt, c.held, true, comment, dropped)
	c.held = nil
}

// frame writes one frame.
func (c *capture) frame(at time.Duration, b []byte, inbound bool, comment string, dropped bool) {
	if c.err != nil {
		return
	}
	dir := pcapgo.NgEpbFlagDirectionOutbound
	if inbound {
		dir = pcapgo.NgEpbFlagDirectionInbound
	}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}
	if comment != "" {
		if len(comment) > 0xfff0 {
			comment = comment[:0xfff0]
		}
		opts.Comments = []string{comment}
	}
	if dropped {
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], tcActShot)
		opts.Verdicts = []pcapgo.NgEpbVerdict{{Type: pcapgo.NgEpbVerdictTypeLinuxeBPFTC, Data: v[:]}}
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, 0).Add(at), CaptureLength: len(b), Length: len(b)}
	c.err = c.ng.WritePacketWithOptions(ci, b, opts)
}

func (c *capture) flush() {
	c.release("", false)
	if c.err == nil {
		c.err = c.ng.Flush()
	}
}
