//go:build linux

package plot_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/plot"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// sniffer captures the frames of one interface as tcpdump does: an
// AF_PACKET socket bound to it; writePcap writes them to a classic pcap
// file with nothing but their bytes and times.
type sniffer struct {
	fd     int
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	frames []rawFrame
	drops  uint32 // frames the kernel dropped from the capture (PACKET_STATISTICS)
}

// maxSniffed bounds the frames a sniffer keeps.
const maxSniffed = 100000

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sniff starts capturing on ifname in ns; the capture ends at writePcap
// or when the test ends.
func sniff(t *testing.T, ns *taptest.Namespace, ifname string) *sniffer {
	t.Helper()
	s := &sniffer{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		// Room for the kernel's bursts of 64 KiB super-frames: with the
		// default socket buffer (~200 KiB) a burst overflowed it and
		// frames went missing from the capture (CI: the kernel's last
		// data and FIN), as tcpdump's "dropped by kernel".
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sniffBuffer); err != nil {
			return err
		}
		// A read returns at least every 50 ms, so the stop is seen.
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		t.Fatalf("AF_PACKET socket on %s: %v", ifname, err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 1<<17) // a super-frame is up to 65,535 bytes of IP plus its Ethernet header
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(s.fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			s.mu.Lock()
			if len(s.frames) < maxSniffed {
				s.frames = append(s.frames, rawFrame{t: time.Now(), data: bytes.Clone(buf[:n]), length: n})
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.end)
	return s
}

// sniffBuffer is the sniffer's socket buffer.
const sniffBuffer = 16 << 20

func (s *sniffer) end() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		if st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			s.drops = st.Drops
		}
		unix.Close(s.fd)
	})
}

// writePcap ends the capture and writes it as tcpdump -w would. A
// capture the kernel dropped frames from fails the test as such: the
// page of an incomplete capture is not the page under test.
func (s *sniffer) writePcap(t *testing.T, path string) int {
	t.Helper()
	s.end()
	if s.drops > 0 {
		t.Fatalf("the capture lost %d frames in the kernel (socket buffer %d bytes)", s.drops, sniffBuffer)
	}
	writePcap(t, path, s.frames)
	return len(s.frames)
}

// A capture no tapstack wrote: the Linux kernel sends 1 MiB to tapstack
// over a TAP device while tapstack loses 5% of what arrives, captured on
// the device as tcpdump captures (AF_PACKET, classic pcap, no comments,
// directions or events). The page draws it from the wire alone: every
// TCP frame, the kernel's retransmissions, both ends' states, in flight
// and RTT estimates; and it opens in Chromium without an error.
func TestKernelCapture(t *testing.T) {
	ns := taptest.NewNamespace(t)
	dev := ns.AddTAP(t, "tsplotcap0", "192.0.2.1/24")
	sn := sniff(t, ns, "tsplotcap0")
	link := tap.NewFault(dev.LinkEndpoint(), tap.FaultConfig{Seed: 5, Inbound: &tap.FaultConfig{Loss: 0.05}})
	s := stack.New(stack.Options{})
	t.Cleanup(s.Close)
	if _, err := s.AddNIC(link, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	ln, err := conn.Listen(s, "tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 1 << 20
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	if err := ns.Do(func() error {
		k, err := net.DialTimeout("tcp4", "192.0.2.2:80", 10*time.Second)
		if err != nil {
			return err
		}
		defer k.Close()
		k.SetDeadline(time.Now().Add(time.Minute))
		if _, err := k.Write(bytes.Repeat([]byte("k"), size)); err != nil {
			return err
		}
		if err := k.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, k) // until tapstack's FIN
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != size {
		t.Fatalf("tapstack read %d bytes, want %d", n, size)
	}
	// The last ACK (of tapstack's FIN) on its way.
	time.Sleep(100 * time.Millisecond)
	dir := t.TempDir()
	path := filepath.Join(dir, "kernel.pcap")
	frames := sn.writePcap(t, path)
	st := link.InboundStats()
	t.Logf("%d frames captured; tapstack lost %d of %d arriving", frames, st.Lost, st.Frames)

	d, err := plot.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Annotated || d.Commented || len(d.Conns) != 1 || d.Frames != frames {
		t.Fatalf("annotated %v, commented %v, %d connections, %d frames of %d", d.Annotated, d.Commented, len(d.Conns), d.Frames, frames)
	}
	c := d.Conns[0]
	if c.Ends[0].Role != "client" || !strings.HasPrefix(c.Ends[0].Addr, "192.0.2.1:") || c.Ends[1].Addr != "192.0.2.2:80" {
		t.Errorf("ends %+v: the kernel sent the SYN", c.Ends)
	}
	if c.Flows[0].Bytes != size || len(c.Segs) != frames-d.Others {
		t.Errorf("flow %+v; %d segments of %d TCP frames", c.Flows[0], len(c.Segs), frames-d.Others)
	}
	retx := 0
	for _, sg := range c.Segs {
		if sg.Dir == 0 && sg.Mark == "retx" && strings.HasPrefix(sg.Why, "wire") {
			retx++
		}
	}
	// Every frame tapstack lost was sent again by the kernel (and the
	// capture saw both copies); a segment lost twice counts twice.
	if st.Lost == 0 || retx == 0 {
		t.Errorf("%d frames lost, %d retransmissions read off the wire", st.Lost, retx)
	}
	for i, want := range []string{"SYN-SENT ESTABLISHED FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT", "SYN-RECEIVED ESTABLISHED CLOSE-WAIT LAST-ACK CLOSED"} {
		var to []string
		for _, x := range c.States[i] {
			to = append(to, x.To)
		}
		if got := strings.Join(to, " "); c.Ends[i].States != "wire" || got != want {
			t.Errorf("%s's states (from the %s): %s, want %s", c.Ends[i].Addr, c.Ends[i].States, got, want)
		}
	}
	if len(c.Series.Cwnd) != 0 || len(c.Series.InFlight[0]) == 0 || len(c.Series.RTT[0]) == 0 {
		t.Errorf("series from the wire: %d cwnd, %d in flight, %d RTT", len(c.Series.Cwnd), len(c.Series.InFlight[0]), len(c.Series.RTT[0]))
	}

	if chromiumPath() == "" {
		return // the rest opens the page
	}
	page := filepath.Join(dir, "kernel.html")
	if _, err := plot.File(path, page); err != nil {
		t.Fatal(err)
	}
	res := openPage(t, page, []string{"svg.tsg g.plot path.data", "svg.tsg g.plot path.retx", "svg.tsg g.plot path.ack", "svg.states rect"}, 1400)
	for _, e := range append(append(res.errors, res.layout...), res.external...) {
		t.Errorf("browser: %s", e)
	}
	for sel, n := range res.counts {
		if n == 0 {
			t.Errorf("no %s on the page", sel)
		}
	}
	saveArtifact(t, "kernel.png", res.shot)
}
