package tcptest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Helpers for fuzz targets: they play peers on many ports and cannot say
// in advance which segment comes next, send ICMP errors, and keep their
// seed corpora in testdata.

// NextAny returns the next segment the stack sent, to whatever ports, with
// absolute sequence and acknowledgment numbers (SACK blocks too), and
// false if there is none. Like DrainAny, it fails the test on a packet
// that is not a well-formed TCP segment from the stack to the peer, and it
// leaves what the peer learned (tapstack's ISS) untouched.
func (p *Peer) NextAny() (seg Seg, src, dst uint16, ok bool) {
	p.t.Helper()
	pkt := p.Link.Read()
	if pkt == nil {
		return Seg{}, 0, 0, false
	}
	v := pkt.ToView()
	pkt.DecRef()
	b := append([]byte(nil), v.AsSlice()...)
	v.Release()
	q := Peer{learned: true} // absolute numbers: both ISS are 0
	seg, src, dst, err := q.decode(b)
	if err != nil {
		p.fail("tcptest: the stack sent a bad packet: %v\n% x", err, b)
	}
	if seg.TS {
		p.LastTSVal = seg.TSVal
	}
	p.log(fmt.Sprintf("< IP %v.%d > %v.%d: %s (absolute)", StackAddr, src, PeerAddr, dst, seg))
	return seg, src, dst, true
}

// SetPeerISS changes the peer's initial sequence number (absolute), the
// base of the relative numbers of the peer's side, for a test that plays
// several peers, one per port, each with its own ISS.
func (p *Peer) SetPeerISS(iss uint32) { p.peerISS = iss }

// InjectDestUnreachable sends the stack an ICMPv4 destination unreachable
// with code (0 net, 1 host, 2 protocol, 3 port, 4 fragmentation needed,
// ...), as a router or the peer's host would, quoting the IPv4 header and
// the first 8 bytes (RFC 792) of a segment from the stack to the peer
// whose sequence number is seq, relative to tapstack's ISS.
func (p *Peer) InjectDestUnreachable(code uint8, seq uint32) {
	p.t.Helper()
	quoted := make([]byte, header.IPv4MinimumSize+8)
	ip := header.IPv4(quoted)
	ip.Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize,
		TTL:         64,
		Protocol:    uint8(header.TCPProtocolNumber),
		SrcAddr:     addr(StackAddr),
		DstAddr:     addr(PeerAddr),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	binary.BigEndian.PutUint16(quoted[header.IPv4MinimumSize:], p.StackPort)
	binary.BigEndian.PutUint16(quoted[header.IPv4MinimumSize+2:], p.PeerPort)
	binary.BigEndian.PutUint32(quoted[header.IPv4MinimumSize+4:], p.stackISS+seq)

	icmp := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+len(quoted)))
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(header.ICMPv4Code(code))
	copy(icmp[header.ICMPv4MinimumSize:], quoted)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))

	pkt := make([]byte, header.IPv4MinimumSize+len(icmp))
	outer := header.IPv4(pkt)
	outer.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     addr(PeerAddr),
		DstAddr:     addr(StackAddr),
	})
	outer.SetChecksum(^outer.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], icmp)
	p.log(fmt.Sprintf("> ICMP %v > %v: destination unreachable, code %d, quoting %v.%d > %v.%d seq %d", PeerAddr, StackAddr, code, StackAddr, p.StackPort, PeerAddr, p.PeerPort, seq))
	p.InjectIPv4(pkt)
}

// FuzzSeed is one named input of a fuzz target: its arguments, each a
// []byte, string, bool or uint8, in the target's order.
type FuzzSeed struct {
	Name string
	Args []any
}

// UpdateSeedsEnv names the environment variable that makes
// CheckFuzzSeeds write the seed files instead of comparing them.
const UpdateSeedsEnv = "TAPSTACK_UPDATE_FUZZ_SEEDS"

// CheckFuzzSeeds checks that testdata/fuzz/<target>/seed-<name> holds each
// seed in go test's corpus format, so that the committed corpus is the one
// the code documents; with UpdateSeedsEnv=1 it writes the files.
func CheckFuzzSeeds(t testing.TB, target string, seeds []FuzzSeed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	update := os.Getenv(UpdateSeedsEnv) == "1"
	for _, s := range seeds {
		want := corpusFile(t, s.Args)
		path := filepath.Join(dir, "seed-"+s.Name)
		if update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: missing or out of date (%v); run the test with %s=1 to write it", path, err, UpdateSeedsEnv)
		}
	}
}

// corpusFile encodes args as go test's fuzz corpus files do (version 1).
func corpusFile(t testing.TB, args []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			t.Fatalf("tcptest: a fuzz argument of type %T", a)
		}
	}
	return b.Bytes()
}
