package pcap_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// pair is two tapstack stacks on a tap.Pipe; the server's end is
// captured.
type pair struct {
	server, client *stack.Stack
	capture        *pcap.Writer
	clientLog      eventLog // the client's events, to show when a test fails
}

// eventLog keeps a stack's events as text.
type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) observe(ev event.Event) {
	l.mu.Lock()
	l.lines = append(l.lines, ev.Time.Format("15:04:05.000000")+" "+ev.String())
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// newPair wires the stacks; wrap, if not nil, wraps the client's end (for
// fault injection).
func newPair(t *testing.T, out io.Writer, opts pcap.Options, wrap func(gstack.LinkEndpoint) gstack.LinkEndpoint) *pair {
	t.Helper()
	a, b := tap.Pipe()
	w, err := pcap.New(a, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{capture: w}
	p.server = stack.New(stack.Options{TCP: tcp.Options{TimeWait: 50 * time.Millisecond, Observer: w.Observer(nil)}})
	if _, err := p.server.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	p.client = stack.New(stack.Options{TCP: tcp.Options{TimeWait: 50 * time.Millisecond, Observer: p.clientLog.observe}})
	var cl gstack.LinkEndpoint = b
	if wrap != nil {
		cl = wrap(b)
	}
	if _, err := p.client.AddNIC(cl, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	// Cut the cable before the stacks close: gVisor's Stack.Wait holds
	// the stack's lock while it waits for the pipe's pumps, and a pump
	// delivering a frame into that stack needs the lock.
	t.Cleanup(func() { a.Close(); b.Close(); p.client.Close(); p.server.Close() })
	return p
}

// echoOnce runs one connection's life: connect, send text, half-close,
// read the echo, close; and waits until both ends are CLOSED.
func echoOnce(t *testing.T, p *pair, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := conn.Listen(p.server, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan *conn.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			done <- nil
			return
		}
		io.Copy(c, c)
		c.Close()
		done <- c
	}()
	c, err := (&conn.Dialer{Stack: p.client}).DialTCP(ctx, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != text {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	sc := <-done
	if sc == nil {
		t.Fatal("no connection accepted")
	}
	for _, x := range []*conn.Conn{c, sc} {
		for x.State() != event.Closed {
			select {
			case <-x.Endpoint().Changed():
			case <-ctx.Done():
				t.Fatalf("still %v", x.State())
			}
		}
	}
}

// tcpPackets returns the captured TCP segments, with their flags.
func tcpPackets(t *testing.T, pkts []pcap.Packet) []pcap.Packet {
	t.Helper()
	var out []pcap.Packet
	for _, p := range pkts {
		if _, _, ok := p.TCP(); ok {
			out = append(out, p)
		}
	}
	return out
}

func flagsOf(p pcap.Packet) header.TCPFlags {
	_, k, _ := p.TCP()
	return header.TCPFlags(k.Flags)
}

// The full life of a connection, captured on the server: every segment in
// order, with its direction and what the engine made of it.
func TestCaptureConnectionLife(t *testing.T) {
	var buf bytes.Buffer
	p := newPair(t, &buf, pcap.Options{Name: "pipe0"}, nil)
	defer func() {
		if t.Failed() {
			t.Logf("the client's events:\n%s", &p.clientLog)
		}
	}()
	echoOnce(t, p, "hello, pcap\n")
	p.server.Close()
	if err := p.capture.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	st := p.capture.Stats()
	pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(pkts)) != st.Frames || st.Frames != st.Inbound+st.Outbound {
		t.Errorf("read %d frames, stats %+v", len(pkts), st)
	}
	segs := tcpPackets(t, pkts)
	var lines []string
	for _, s := range segs {
		_, k, _ := s.TCP()
		lines = append(lines, s.Time.Sub(segs[0].Time).Round(time.Microsecond).String()+" "+s.Direction.String()+" "+
			header.TCPFlags(k.Flags).String()+" len="+itoa(k.Len)+" | "+s.Comment())
	}
	t.Logf("capture:\n%s", strings.Join(lines, "\n"))

	// The server's view of an echo: the client opens, sends, half-closes;
	// the server echoes and closes after the client's FIN.
	want := []struct {
		dir     pcap.Direction
		flags   header.TCPFlags
		comment []string // each must appear in the comment
	}{
		{pcap.Inbound, header.TCPFlagSyn, []string{"CLOSED → SYN-RECEIVED"}},
		{pcap.Outbound, header.TCPFlagSyn | header.TCPFlagAck, []string{"SYN-ACK"}},
		{pcap.Inbound, header.TCPFlagAck, []string{"SYN-RECEIVED → ESTABLISHED"}},
	}
	if len(segs) < len(want) {
		t.Fatalf("only %d segments captured", len(segs))
	}
	for i, w := range want {
		s := segs[i]
		if s.Direction != w.dir || flagsOf(s)&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagFin) != w.flags {
			t.Errorf("segment %d: %v %v, want %v %v", i, s.Direction, flagsOf(s), w.dir, w.flags)
		}
		for _, c := range w.comment {
			if !strings.Contains(s.Comment(), c) {
				t.Errorf("segment %d: comment %q lacks %q", i, s.Comment(), c)
			}
		}
	}
	// Every outbound segment says why it was sent; every frame has a
	// direction; the close is annotated on both FINs. A machine that
	// starves a stack for milliseconds (CI, running other packages'
	// tests) makes either end's probe timer fire before the other's ACK
	// comes in: 2·SRTT with data and the FIN in flight (RFC 8985
	// 7.2). Then a FIN goes twice, and its copy must say what it is.
	var finIn, finOut, sawFinIn, sawFinOut, sawData, sawDataIn bool
	closedAt := -1
	for i, s := range segs {
		if s.Direction == pcap.Unknown {
			t.Errorf("segment %d: no direction", i)
		}
		if s.Direction == pcap.Outbound && s.Comment() == "" {
			t.Errorf("segment %d: outbound without a send cause", i)
		}
		f := flagsOf(s)
		switch {
		case f&header.TCPFlagFin != 0 && s.Direction == pcap.Inbound && !finIn:
			finIn = true
			sawFinIn = strings.Contains(s.Comment(), "ESTABLISHED → CLOSE-WAIT")
		case f&header.TCPFlagFin != 0 && s.Direction == pcap.Inbound:
			if c := s.Comment(); !strings.Contains(c, "dropped: old sequence; retransmission of frame") {
				t.Errorf("segment %d: the client's FIN again, annotated %q, want a retransmission", i, c)
			}
		case f&header.TCPFlagFin != 0 && s.Direction == pcap.Outbound && !finOut:
			finOut = true
			sawFinOut = strings.Contains(s.Comment(), "FIN") && strings.Contains(s.Comment(), "CLOSE-WAIT → LAST-ACK") &&
				!strings.Contains(s.Comment(), "recovery") // a probe's note belongs on the probe
		case f&header.TCPFlagFin != 0 && s.Direction == pcap.Outbound:
			if c := s.Comment(); !strings.Contains(c, "tail loss probe") && !strings.Contains(c, "retransmission of frame") {
				t.Errorf("segment %d: our FIN again, annotated %q, want a probe or a retransmission", i, c)
			}
		}
		if s.Direction == pcap.Inbound && strings.Contains(s.Comment(), "LAST-ACK → CLOSED") {
			closedAt = i
		}
		if _, k, _ := s.TCP(); k.Len > 0 && s.Direction == pcap.Outbound && strings.Contains(s.Comment(), "data") {
			sawData = true
		}
		if _, k, _ := s.TCP(); k.Len > 0 && s.Direction == pcap.Inbound && strings.Contains(s.Comment(), "in order") {
			sawDataIn = true // received text says what became of it
		}
	}
	if !sawDataIn {
		t.Errorf("no inbound data segment annotated \"in order\"")
	}
	if !sawFinIn || !sawFinOut || !sawData {
		t.Errorf("FIN in annotated %v, FIN out annotated %v, data annotated %v", sawFinIn, sawFinOut, sawData)
	}
	// The ACK of our FIN closes the connection. After it comes nothing,
	// or, when a FIN went twice, the client's late ACK of the copy,
	// which finds only the listener, and the RST that answers it, as
	// Linux's passive closer keeps no TIME-WAIT (RFC 9293 3.10.7.1).
	if closedAt < 0 {
		t.Errorf("no inbound ACK of our FIN says LAST-ACK → CLOSED")
	}
	for i := closedAt + 1; closedAt >= 0 && i < len(segs); i++ {
		s, c := segs[i], segs[i].Comment()
		late := s.Direction == pcap.Inbound && strings.Contains(c, "dropped: ACK to listener")
		rst := s.Direction == pcap.Outbound && flagsOf(s)&header.TCPFlagRst != 0 && strings.Contains(c, "RST")
		if !late && !rst {
			t.Errorf("segment %d after the close: %v %q, want only a late ACK and its RST", i, s.Direction, c)
		}
	}
	// Timestamps never go backwards.
	for i := 1; i < len(pkts); i++ {
		if pkts[i].Time.Before(pkts[i-1].Time.Add(-time.Millisecond)) {
			t.Errorf("frame %d at %v is before frame %d at %v", i, pkts[i].Time, i-1, pkts[i-1].Time)
		}
	}
	tsharkCheck(t, buf.Bytes(), len(pkts), []string{"SYN-RECEIVED → ESTABLISHED", "SYN-ACK", "LAST-ACK → CLOSED"})
}

// A SYN to a closed port is dropped with "no socket" and answered by RST.
func TestCaptureDropNoSocket(t *testing.T) {
	var buf bytes.Buffer
	p := newPair(t, &buf, pcap.Options{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := (&conn.Dialer{Stack: p.client}).DialTCP(ctx, "tcp", "192.0.2.1:9"); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	// The client saw the RST before the server's capture wrote the SYN
	// it answers: wait for both.
	waitFrames(t, p.capture, func(st pcap.Stats) bool { return st.Annotated >= 2 })
	p.capture.CloseCapture()
	pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	segs := tcpPackets(t, pkts)
	if len(segs) != 2 {
		t.Fatalf("%d segments, want SYN and RST", len(segs))
	}
	if segs[0].Direction != pcap.Inbound || segs[0].Comment() != "dropped: no socket → RST" {
		t.Errorf("SYN: %v %q", segs[0].Direction, segs[0].Comment())
	}
	if segs[1].Direction != pcap.Outbound || segs[1].Comment() != "RST" || flagsOf(segs[1])&header.TCPFlagRst == 0 {
		t.Errorf("RST: %v %v %q", segs[1].Direction, flagsOf(segs[1]), segs[1].Comment())
	}
	tsharkCheck(t, buf.Bytes(), len(pkts), []string{"dropped: no socket → RST", "RST"})
}

// Frames corrupted on the wire are dropped for their checksum.
func TestCaptureDropBadChecksum(t *testing.T) {
	var buf bytes.Buffer
	p := newPair(t, &buf, pcap.Options{}, func(l gstack.LinkEndpoint) gstack.LinkEndpoint {
		return tap.NewFault(l, tap.FaultConfig{Corrupt: 1, Source: rand.NewPCG(1, 2)})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	(&conn.Dialer{Stack: p.client}).DialTCP(ctx, "tcp", "192.0.2.1:9") // every SYN is corrupted
	p.capture.CloseCapture()
	pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var bad int
	for _, s := range pkts {
		if strings.Contains(s.Comment(), "dropped: bad checksum") {
			bad++
		}
	}
	if bad == 0 {
		for _, s := range pkts {
			t.Logf("%v %d bytes %q", s.Direction, len(s.Data), s.Comment())
		}
		t.Fatal("no frame annotated with the bad checksum")
	}
}

// A file limit without rotation stops the capture and counts the rest;
// with rotation the frames go on in further files.
func TestSizeLimitAndRotation(t *testing.T) {
	var buf bytes.Buffer
	p := newPair(t, &buf, pcap.Options{MaxBytes: 1024}, nil)
	echoOnce(t, p, strings.Repeat("x", 3000))
	p.capture.CloseCapture()
	st := p.capture.Stats()
	if st.Skipped == 0 || int64(buf.Len()) > 1024 {
		t.Errorf("limit 1024: file %d bytes, stats %+v", buf.Len(), st)
	}
	pkts, err := pcap.ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil || uint64(len(pkts)) != st.Frames {
		t.Errorf("read %d packets (%v), stats %+v", len(pkts), err, st)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "cap.pcapng")
	a, b := tap.Pipe()
	w, err := pcap.Create(path, a, pcap.Options{MaxBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	p = &pair{capture: w}
	p.server = stack.New(stack.Options{TCP: tcp.Options{TimeWait: time.Millisecond, Observer: w.Observer(nil)}})
	p.server.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24"))
	p.client = stack.New(stack.Options{TCP: tcp.Options{TimeWait: time.Millisecond}})
	p.client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24"))
	echoOnce(t, p, strings.Repeat("y", 3000))
	p.client.Close()
	p.server.Close() // closes the link, which closes the capture
	st = w.Stats()
	if st.Files < 2 || st.Skipped != 0 {
		t.Errorf("rotation: stats %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "cap*.pcapng"))
	var total int
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Size() > 2048 {
			t.Errorf("%s: %d bytes, over the limit", f, fi.Size())
		}
		pk, err := pcap.ReadFile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		total += len(pk)
	}
	if len(files) != st.Files || uint64(total) != st.Frames {
		t.Errorf("%d files with %d frames; stats %+v", len(files), total, st)
	}
}

// Annotations that never meet a frame are evicted, so memory stays
// bounded.
func TestAnnotationsBounded(t *testing.T) {
	a, _ := tap.Pipe()
	w, err := pcap.New(a, io.Discard, pcap.Options{MaxAnnotations: 8})
	if err != nil {
		t.Fatal(err)
	}
	obs := w.Observer(nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				obs(event.Event{Kind: event.KindSend, Conn: event.ConnID{Local: netip.MustParseAddrPort("192.0.2.1:1"), Remote: netip.MustParseAddrPort("192.0.2.2:2")},
					Key: event.SegKey{Seq: uint32(g*1000 + i)}})
			}
		}()
	}
	wg.Wait()
	st := w.Stats()
	if st.Pending != 8 || st.Evicted != 400-8 {
		t.Errorf("stats %+v, want 8 pending and 392 evicted", st)
	}
}

// waitFrames waits until the capture's counters satisfy ok.
func waitFrames(t *testing.T, w *pcap.Writer, ok func(pcap.Stats) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(w.Stats()); {
		if time.Now().After(deadline) {
			t.Fatalf("capture stats %+v", w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// tsharkCheck reads the capture with the real tshark: it must see every
// frame, with directions, and the comments.
func tsharkCheck(t *testing.T, capture []byte, frames int, comments []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	if err := os.WriteFile(path, capture, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := pcaptest.Tshark(path)
	if err == pcaptest.ErrNoTshark {
		t.Log("tshark is not installed (apt-get install tshark): skipping the tshark check")
		return
	}
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	notes, err := pcap.ReadNotes(bytes.NewReader(capture))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != frames+len(notes) {
		t.Errorf("tshark read %d frames, want %d and %d notes", len(out), frames, len(notes))
	}
	all := ""
	for i, f := range out {
		if f.Note {
			continue
		}
		if f.Direction == pcap.Unknown {
			t.Errorf("tshark: frame %d without direction", i+1)
		}
		all += f.Comment + "\n"
	}
	for _, c := range comments {
		if !strings.Contains(all, c) {
			t.Errorf("tshark comments lack %q:\n%s", c, all)
		}
	}
}

// TestLinkDrops: frames the link dropped since the previous frame are
// written in epb_dropcount and the comment.
func TestLinkDrops(t *testing.T) {
	var drops uint64
	var buf bytes.Buffer
	inner := channel.New(16, 1500, "")
	w, err := pcap.New(inner, &buf, pcap.Options{LinkDrops: func() uint64 { return drops }})
	if err != nil {
		t.Fatal(err)
	}
	send := func() {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, 60))})
		var l gstack.PacketBufferList
		l.PushBack(pkt)
		w.WritePackets(l)
		pkt.DecRef()
	}
	send()
	drops = 3
	send()
	w.CloseCapture()
	pkts, err := pcap.ReadAll(&buf)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("%d packets, %v", len(pkts), err)
	}
	if pkts[0].DropCount != 0 || pkts[1].DropCount != 3 || !strings.Contains(pkts[1].Comment(), "link drops 3") {
		t.Errorf("drop counts %d, %d; comment %q", pkts[0].DropCount, pkts[1].DropCount, pkts[1].Comment())
	}
}

// frameRecorder is link middleware on the client that keeps a copy of
// every frame the client writes, so that a test can deliver copies of
// them, altered, to the captured server.
type frameRecorder struct {
	nested.Endpoint
	mu     sync.Mutex
	frames [][]byte
}

func (r *frameRecorder) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	r.mu.Lock()
	for _, p := range pkts.AsSlice() {
		var b []byte
		for _, v := range p.AsSlices() {
			b = append(b, v...)
		}
		r.frames = append(r.frames, b)
	}
	r.mu.Unlock()
	return r.Endpoint.WritePackets(pkts)
}

// last returns a copy of the last TCP frame the client wrote.
func (r *frameRecorder) last(t *testing.T) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.frames) - 1; i >= 0; i-- {
		f := r.frames[i]
		if len(f) > header.EthernetMinimumSize+header.IPv4MinimumSize && header.Ethernet(f).Type() == header.IPv4ProtocolNumber &&
			header.IPv4(f[header.EthernetMinimumSize:]).Protocol() == uint8(header.TCPProtocolNumber) {
			return append([]byte(nil), f...)
		}
	}
	t.Fatal("the client wrote no TCP frame")
	return nil
}

// connPair is two tapstack stacks on a pipe with one connection open,
// client 192.0.2.2 to server 192.0.2.1:7; the server's end is captured,
// and the client's frames are recorded, to be delivered again, altered,
// as if the wire carried them (inject).
type connPair struct {
	server, client *stack.Stack
	capture        *pcap.Writer
	buf            *bytes.Buffer
	rec            *frameRecorder
	srv, cli       *conn.Conn
	window         time.Duration
	events         eventLog   // the server's events
	fault          *tap.Fault // between the capture and the pipe, if any (newFaultConnPair)
}

// newConnPair connects the stacks, the capture's window win.
func newConnPair(t *testing.T, win time.Duration, pipeOpts ...tap.PipeOption) *connPair {
	t.Helper()
	return newFaultConnPair(t, win, nil, nil, pipeOpts...)
}

// newFaultConnPair is newConnPair with, if cfg is not nil, a tap.Fault
// between the server's capture and its end of the pipe (the capture above
// the fault, its FaultObserver the fault's observer); its Seed is 1 unless
// set. inject delivers through the fault's inbound side. tweak, if not
// nil, changes both stacks' TCP options.
func newFaultConnPair(t *testing.T, win time.Duration, cfg *tap.FaultConfig, tweak func(*tcp.Options), pipeOpts ...tap.PipeOption) *connPair {
	t.Helper()
	a, b := tap.Pipe(pipeOpts...)
	p := &connPair{buf: &bytes.Buffer{}, window: win, rec: &frameRecorder{}}
	var link gstack.LinkEndpoint = a
	var faultObs func(tap.FaultEvent) // set before any frame moves
	if cfg != nil {
		c := *cfg
		if c.Seed == 0 && c.Source == nil {
			c.Seed = 1
		}
		c.Observer = func(ev tap.FaultEvent) { faultObs(ev) }
		p.fault = tap.NewFault(a, c)
		link = p.fault
	}
	w, err := pcap.New(link, p.buf, pcap.Options{Window: win})
	if err != nil {
		t.Fatal(err)
	}
	if p.fault != nil {
		faultObs = w.FaultObserver(nil)
	}
	p.capture = w
	so, co := tcp.Options{TimeWait: 50 * time.Millisecond}, tcp.Options{TimeWait: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&so)
		tweak(&co)
	}
	so.Observer = w.Observer(p.events.observe)
	p.server = stack.New(stack.Options{TCP: so})
	if _, err := p.server.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	p.client = stack.New(stack.Options{TCP: co})
	p.rec.Endpoint.Init(b, p.rec)
	if _, err := p.client.AddNIC(p.rec, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close(); p.client.Close(); p.server.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := conn.Listen(p.server, "tcp", "192.0.2.1:7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	acc := make(chan *conn.Conn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		acc <- c
	}()
	if p.cli, err = (&conn.Dialer{Stack: p.client}).DialTCP(ctx, "tcp", "192.0.2.1:7"); err != nil {
		t.Fatal(err)
	}
	if p.srv = <-acc; p.srv == nil {
		t.Fatal("no connection accepted")
	}
	return p
}

// settle waits until every frame captured so far has left the window.
func (p *connPair) settle() { time.Sleep(3 * p.window) }

// inject delivers frame to the server through the capture, as if the
// wire carried it.
func (p *connPair) inject(frame []byte) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), frame...))})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if p.fault != nil {
		p.fault.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
	} else {
		p.capture.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
	}
	pkt.DecRef()
}

// resend writes frame on the client's end of the pipe, after what the
// client wrote: the server's end delivers it in its turn, on the pipe's
// goroutine, as a duplicate the wire made.
func (p *connPair) resend(t *testing.T, frame []byte) {
	t.Helper()
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), frame...))})
	var l gstack.PacketBufferList
	l.PushBack(pkt)
	n, err := p.rec.WritePackets(l)
	pkt.DecRef()
	if n != 1 || err != nil {
		t.Fatalf("resend: %d, %v", n, err)
	}
}

// read closes the capture and returns its TCP frames captured at or after
// t0, with a line each to show when a test fails.
func (p *connPair) read(t *testing.T, t0 time.Time) ([]pcap.Packet, string) {
	t.Helper()
	if err := p.capture.CloseCapture(); err != nil {
		t.Fatal(err)
	}
	pkts, err := pcap.ReadAll(bytes.NewReader(p.buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var out []pcap.Packet
	var b strings.Builder
	for _, f := range pkts {
		_, k, ok := f.TCP()
		if !ok || f.Time.Before(t0) {
			continue
		}
		out = append(out, f)
		fmt.Fprintf(&b, "#%d %s %s seq=%d ack=%d len=%d id=%d dropped=%v | %s\n", f.Number, f.Direction, k.Flags, k.Seq, k.Ack, k.Len, f.PacketID, f.Dropped, f.Comment())
	}
	return out, b.String()
}

// inbound returns the inbound frames of frames.
func inbound(frames []pcap.Packet) []pcap.Packet {
	var in []pcap.Packet
	for _, f := range frames {
		if f.Direction == pcap.Inbound {
			in = append(in, f)
		}
	}
	return in
}

// segment is a TCP segment made from a frame of the client's (rebuild).
type segment struct {
	seq, ack uint32
	flags    header.TCPFlags
	payload  []byte
	tsval    *uint32 // replaces the Timestamps option's TSval, if set
	badCsum  bool
}

// rebuild returns tmpl, an Ethernet/IPv4/TCP frame of the client's, with
// s's SEQ, ACK, flags and payload; its options kept, lengths and
// checksums made anew.
func rebuild(tmpl []byte, s segment) []byte {
	hl := int(header.IPv4(tmpl[header.EthernetMinimumSize:]).HeaderLength())
	off := int(header.TCP(tmpl[header.EthernetMinimumSize+hl:]).DataOffset())
	b := append(append([]byte(nil), tmpl[:header.EthernetMinimumSize+hl+off]...), s.payload...)
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.SetTotalLength(uint16(hl + off + len(s.payload)))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	th := header.TCP(b[header.EthernetMinimumSize+hl:])
	th.SetSequenceNumber(s.seq)
	th.SetAckNumber(s.ack)
	th.SetFlags(uint8(s.flags))
	if s.tsval != nil {
		opts := th[header.TCPMinimumSize:off]
		for i := 0; i+1 < len(opts) && opts[i] != 0; {
			if opts[i] == 1 {
				i++
				continue
			}
			if opts[i] == 8 && opts[i+1] == 10 {
				binary.BigEndian.PutUint32(opts[i+2:], *s.tsval)
			}
			i += max(int(opts[i+1]), 2)
		}
	}
	th.SetChecksum(0)
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(th)))
	th.SetChecksum(^checksum.Checksum(th, x))
	if s.badCsum {
		th.SetChecksum(th.Checksum() ^ 0x5a5a)
	}
	return b
}

// tcpOf returns a frame's TCP header.
func tcpOf(f []byte) header.TCP {
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	return header.TCP(f[header.EthernetMinimumSize+int(ip.HeaderLength()):])
}

// TestCaptureDropOnItsCopy: a pure ACK arrives and is taken; an identical
// copy (the same SEQ, ACK, flags and length) follows and is dropped, for
// its checksum or its old timestamp (PAWS). The drop is told on the copy,
// the frame the engine dropped, and the first says nothing of it.
func TestCaptureDropOnItsCopy(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		spoil      func(s *segment, tsval uint32)
	}{
		{"bad checksum", "dropped: bad checksum", func(s *segment, _ uint32) { s.badCsum = true }},
		{"PAWS", "dropped: PAWS: old timestamp", func(s *segment, tsval uint32) { old := tsval - 100000; s.tsval = &old }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newConnPair(t, 100*time.Millisecond)
			p.settle()
			tmpl := p.rec.last(t)
			th := tcpOf(tmpl)
			o := header.ParseTCPOptions(th[header.TCPMinimumSize:th.DataOffset()])
			if !o.TS {
				t.Fatal("the client's ACK carries no Timestamps option")
			}
			good := segment{seq: th.SequenceNumber(), ack: th.AckNumber(), flags: header.TCPFlagAck}
			bad := good
			tc.spoil(&bad, o.TSVal)
			t0 := time.Now()
			p.inject(rebuild(tmpl, good))
			p.inject(rebuild(tmpl, bad))
			p.settle()
			frames, dump := p.read(t, t0)
			in := inbound(frames)
			if len(in) != 2 {
				t.Fatalf("%d inbound frames, want 2:\n%s", len(in), dump)
			}
			if in[0].Dropped || strings.Contains(in[0].Comment(), "dropped") {
				t.Errorf("the first, which the engine took, says %q (dropped %v)", in[0].Comment(), in[0].Dropped)
			}
			if !in[1].Dropped || !strings.Contains(in[1].Comment(), tc.want) {
				t.Errorf("the copy, which the engine dropped, says %q (dropped %v); want %q", in[1].Comment(), in[1].Dropped, tc.want)
			}
			if t.Failed() {
				t.Logf("capture:\n%s", dump)
			}
		})
	}
}

// TestCaptureDuplicateHandshakeACK: the ACK that completes the handshake
// comes twice, the copy while the first is still in the window. The first
// says SYN-RECEIVED → ESTABLISHED; the copy, a plain ACK to an
// established connection, says what the engine made of it. (The copy
// follows the first on the pipe: delivered at the same time, on two
// goroutines, nothing would tell whose events are whose.)
func TestCaptureDuplicateHandshakeACK(t *testing.T) {
	p := newConnPair(t, 200*time.Millisecond)
	tmpl := p.rec.last(t)
	p.resend(t, tmpl)
	p.settle()
	frames, dump := p.read(t, time.Time{})
	th := tcpOf(tmpl)
	var same []pcap.Packet
	for _, f := range inbound(frames) {
		if _, k, _ := f.TCP(); k.Seq == th.SequenceNumber() && k.Ack == th.AckNumber() && k.Len == 0 && header.TCPFlags(k.Flags) == header.TCPFlagAck {
			same = append(same, f)
		}
	}
	if len(same) != 2 {
		t.Fatalf("%d copies of the handshake's ACK, want 2:\n%s", len(same), dump)
	}
	if c := same[0].Comment(); !strings.Contains(c, "SYN-RECEIVED → ESTABLISHED") {
		t.Errorf("the handshake's ACK says %q", c)
	}
	if c := same[1].Comment(); !strings.HasPrefix(c, "ACK: nothing new") {
		t.Errorf("the copy says %q; want \"ACK: nothing new\"", c)
	}
	if t.Failed() {
		t.Logf("capture:\n%s\nthe server's events:\n%s", dump, &p.events)
	}
}

// TestCaptureReplyHeldOnItsCopy: three copies of a pure ACK far out of
// the receive window arrive back to back. The engine drops each as out of
// window, answers the first with an ACK and holds back the answer to the
// others (tcp.Options.InvalidRateLimit), reporting a second drop, "ACK
// rate limited", for each of those: every copy says it was dropped out
// of window, and the later two that their answer was held back.
func TestCaptureReplyHeldOnItsCopy(t *testing.T) {
	p := newConnPair(t, 100*time.Millisecond)
	p.settle()
	tmpl := p.rec.last(t)
	th := tcpOf(tmpl)
	s := segment{seq: th.SequenceNumber() + 1<<30, ack: th.AckNumber(), flags: header.TCPFlagAck}
	t0 := time.Now()
	for range 3 {
		p.inject(rebuild(tmpl, s))
	}
	p.settle()
	frames, dump := p.read(t, t0)
	in := inbound(frames)
	if len(in) != 3 {
		t.Fatalf("%d inbound frames, want 3:\n%s", len(in), dump)
	}
	for i, f := range in {
		want := "dropped: out of window"
		if i > 0 {
			want += "; ACK rate limited"
		}
		if !f.Dropped || f.Comment() != want {
			t.Errorf("copy %d (frame %d) says %q (dropped %v); want %q", i+1, f.Number, f.Comment(), f.Dropped, want)
		}
	}
	if st := p.capture.Stats(); st.Unmatched != 0 || st.Pending != 0 {
		t.Errorf("%d events unmatched, %d waiting for a frame", st.Unmatched, st.Pending)
	}
	if t.Failed() {
		t.Logf("capture:\n%s", dump)
	}
}

// TestCaptureDropNoSocketEachCopy: two identical SYNs for a port with no
// listener arrive back to back; each is dropped ("no socket → RST") and
// answered by an RST of its own, which says "RST".
func TestCaptureDropNoSocketEachCopy(t *testing.T) {
	p := newConnPair(t, 100*time.Millisecond)
	p.settle()
	f := rebuild(p.rec.last(t), segment{seq: 1000, flags: header.TCPFlagSyn})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	th := tcpOf(f)
	th.SetDestinationPort(9)
	th.SetChecksum(0)
	th.SetChecksum(^checksum.Checksum(th, header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(th)))))
	t0 := time.Now()
	p.inject(f)
	p.inject(f)
	p.settle()
	frames, dump := p.read(t, t0)
	var syns, rsts []pcap.Packet
	for _, g := range frames {
		switch {
		case g.Direction == pcap.Inbound:
			syns = append(syns, g)
		case flagsOf(g)&header.TCPFlagRst != 0:
			rsts = append(rsts, g)
		}
	}
	if len(syns) != 2 || len(rsts) != 2 {
		t.Fatalf("%d SYNs and %d RSTs, want 2 and 2:\n%s", len(syns), len(rsts), dump)
	}
	for _, s := range syns {
		if !s.Dropped || !strings.HasPrefix(s.Comment(), "dropped: no socket → RST") {
			t.Errorf("SYN frame %d says %q (dropped %v)", s.Number, s.Comment(), s.Dropped)
		}
	}
	for _, r := range rsts {
		if r.Comment() != "RST" {
			t.Errorf("RST frame %d says %q", r.Number, r.Comment())
		}
	}
	if t.Failed() {
		t.Logf("capture:\n%s", dump)
	}
}

// TestCaptureKeepalives: keepalive probes every 15 ms, many inside the
// capture's window of 200 ms, all of one shape (SEQ = SND.UNA-1, no
// data), the answers of one shape too: each probe says "keepalive #n",
// each answer what the engine made of it, none "no engine event".
func TestCaptureKeepalives(t *testing.T) {
	p := newConnPair(t, 200*time.Millisecond)
	p.settle()
	t0 := time.Now()
	if err := p.srv.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Millisecond, Interval: 15 * time.Millisecond, Count: 9}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	p.srv.SetKeepAlive(false)
	p.settle()
	frames, dump := p.read(t, t0)
	probes := 0
	for _, f := range frames {
		c := f.Comment()
		if strings.Contains(c, "no engine event") {
			t.Errorf("frame %d says %q", f.Number, c)
		}
		if f.Direction == pcap.Outbound {
			probes++
			if !strings.HasPrefix(c, "keepalive #") {
				t.Errorf("probe frame %d says %q", f.Number, c)
			}
		}
	}
	if probes < 3 {
		t.Errorf("%d probes: the test shows little", probes)
	}
	if t.Failed() {
		t.Logf("capture:\n%s\nthe server's events:\n%s", dump, &p.events)
	}
}
