package plot_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/plot"
)

// Captures written segment by segment, so that a test states what
// happened on the wire and checks what the page shows of it. The client
// is 192.0.2.2:40000 (2001:db8::2 with v6), the server 192.0.2.1:80
// (2001:db8::1). As tcpdump writes them, a capture is classic pcap with
// nothing but the frames; as tapstack writes them (tapstack), it is
// pcapng whose frames say their direction (the server is tapstack's end),
// whether they were dropped and why, and the engine's events.

// wseg is one segment of a test's capture.
type wseg struct {
	At       time.Duration // since the capture's start
	C2S      bool          // sent by the client
	Flags    string        // tcpdump's: S, S., ., P., F., R, R.
	Seq, Ack uint32        // absolute
	Len      int
	Win      uint16
	WS       int      // window scale option + 1 (0: none), on a SYN
	MSS      uint16   // MSS option, on a SYN
	SACK     []uint32 // SACK blocks, left and right edges
	TSval    uint32   // with TSecr, the timestamps option when TSval > 0
	TSecr    uint32
	IPID     uint16
	Dropped  bool   // tapstack: the frame's verdict is dropped
	Comment  string // tapstack: the frame's comment
}

// wire builds a test's capture.
type wire struct {
	t        *testing.T
	v6       bool
	tapstack bool
	segs     []wseg
	events   []pcap.EventRecord
}

var wireStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (w *wire) add(s ...wseg) { w.segs = append(w.segs, s...) }

// event records an engine event at, its connection the server's end.
func (w *wire) event(at time.Duration, e pcap.EventRecord) {
	e.V, e.Time = 1, wireStart.Add(at).UnixNano()
	if e.Local == "" {
		e.Local, e.Remote = w.addr(false).String(), w.addr(true).String()
	}
	w.events = append(w.events, e)
}

func (w *wire) addr(client bool) *net.TCPAddr {
	switch {
	case w.v6 && client:
		return &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 40000}
	case w.v6:
		return &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 80}
	case client:
		return &net.TCPAddr{IP: net.ParseIP("192.0.2.2").To4(), Port: 40000}
	}
	return &net.TCPAddr{IP: net.ParseIP("192.0.2.1").To4(), Port: 80}
}

// frame encodes s as an Ethernet frame.
func (w *wire) frame(s wseg) []byte {
	w.t.Helper()
	src, dst := w.addr(s.C2S), w.addr(!s.C2S)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port), DstPort: layers.TCPPort(dst.Port), Seq: s.Seq, Ack: s.Ack, Window: s.Win,
		SYN: strings.Contains(s.Flags, "S"), FIN: strings.Contains(s.Flags, "F"), RST: strings.Contains(s.Flags, "R"),
		PSH: strings.Contains(s.Flags, "P"), ACK: strings.Contains(s.Flags, ".")}
	if s.MSS > 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, s.MSS)})
	}
	if s.WS > 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.WS - 1)}})
	}
	if s.TSval > 0 {
		d := binary.BigEndian.AppendUint32(nil, s.TSval)
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: binary.BigEndian.AppendUint32(d, s.TSecr)})
	}
	if len(s.SACK) > 0 {
		var d []byte
		for _, v := range s.SACK {
			d = binary.BigEndian.AppendUint32(d, v)
		}
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: uint8(2 + len(d)), OptionData: d})
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.SerializableLayer
	if w.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.IP, DstIP: dst.IP}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: s.IPID, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: src.IP, DstIP: dst.IP}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(make([]byte, s.Len))); err != nil {
		w.t.Fatal(err)
	}
	return buf.Bytes()
}

// plot writes the capture and returns its page's data, read back from the
// page as a user's browser has it.
func (w *wire) plot() *plot.Data {
	w.t.Helper()
	path := filepath.Join(w.t.TempDir(), "wire.pcap")
	if w.tapstack {
		path += "ng"
		w.writeNg(path)
	} else {
		var frames []rawFrame
		for _, s := range w.segs {
			b := w.frame(s)
			frames = append(frames, rawFrame{t: wireStart.Add(s.At), data: b, length: len(b)})
		}
		writePcap(w.t, path, frames)
	}
	d, err := plot.ReadFile(path)
	if err != nil {
		w.t.Fatal(err)
	}
	var page bytes.Buffer
	if err := plot.WriteHTML(&page, d); err != nil {
		w.t.Fatal(err)
	}
	back, err := plot.Extract(page.Bytes())
	if err != nil {
		w.t.Fatal(err)
	}
	return back
}

// writeNg writes the capture as tapstack's pcap.Writer does: directions,
// verdicts and comments on the frames, the events in interface
// statistics blocks (pcap/events.go).
func (w *wire) writeNg(path string) {
	w.t.Helper()
	var b bytes.Buffer
	ng, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, s := range w.segs {
		data := w.frame(s)
		dir := pcapgo.NgEpbFlagDirectionOutbound
		if s.C2S {
			dir = pcapgo.NgEpbFlagDirectionInbound
		}
		opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}
		if s.Comment != "" {
			opts.Comments = []string{s.Comment}
		}
		if s.Dropped {
			opts.Verdicts = []pcapgo.NgEpbVerdict{{Type: pcapgo.NgEpbVerdictTypeLinuxeBPFTC, Data: binary.LittleEndian.AppendUint64(nil, 2)}}
		}
		ci := gopacket.CaptureInfo{Timestamp: wireStart.Add(s.At), CaptureLength: len(data), Length: len(data)}
		if err := ng.WritePacketWithOptions(ci, data, opts); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := ng.Flush(); err != nil {
		w.t.Fatal(err)
	}
	if len(w.events) > 0 {
		// One interface statistics block: interface 0, a time, then a
		// custom option (2988) per event: tapstack's PEN and the JSON.
		body := binary.LittleEndian.AppendUint32(nil, 0)
		body = binary.LittleEndian.AppendUint64(body, 0)
		for _, e := range w.events {
			j, err := json.Marshal(e)
			if err != nil {
				w.t.Fatal(err)
			}
			v := append(binary.LittleEndian.AppendUint32(nil, 32473), j...)
			body = binary.LittleEndian.AppendUint16(body, 2988)
			body = binary.LittleEndian.AppendUint16(body, uint16(len(v)))
			body = append(body, v...)
			for len(body)%4 != 0 {
				body = append(body, 0)
			}
		}
		body = append(body, 0, 0, 0, 0) // opt_endofopt
		n := uint32(12 + len(body))
		blk := binary.LittleEndian.AppendUint32(nil, 5)
		blk = binary.LittleEndian.AppendUint32(blk, n)
		blk = append(blk, body...)
		blk = binary.LittleEndian.AppendUint32(blk, n)
		b.Write(blk)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// Sequence numbers of the tests' handshakes: the client's ISN and the
// server's.
const (
	isnC = 1000
	isnS = 5000
)

// handshake is a clean three-way handshake at 0, 10 and 20 ms, with
// window scaling (7 each way) and SACK-permitted left out.
func handshake() []wseg {
	return []wseg{
		{At: 0, C2S: true, Flags: "S", Seq: isnC, Win: 64240, WS: 8, MSS: 1460},
		{At: 10 * time.Millisecond, Flags: "S.", Seq: isnS, Ack: isnC + 1, Win: 65160, WS: 8, MSS: 1460},
		{At: 20 * time.Millisecond, C2S: true, Flags: ".", Seq: isnC + 1, Ack: isnS + 1, Win: 502},
	}
}

// states lists an end's states on the page, each as "STATE@ms".
func states(c *plot.Conn, end int) string {
	var b []string
	for _, s := range c.States[end] {
		b = append(b, fmt.Sprintf("%s@%g", s.To, math.Round(s.T*1e6)/1e3))
	}
	return strings.Join(b, " ")
}
