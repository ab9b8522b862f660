package tap_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// newStack returns a gVisor stack (gVisor's own ARP, IPv4, ICMP and TCP)
// with one NIC on ep holding prefix, e.g. "192.0.2.1/24".
func newStack(t testing.TB, ep stack.LinkEndpoint, prefix string) *stack.Stack {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, icmp.NewProtocol4},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	p := netip.MustParsePrefix(prefix)
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(p.Addr().As4()).WithPrefix(),
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	// AddrFrom4(...).WithPrefix() is a /32; route the whole subnet.
	sub, err := tcpip.NewSubnet(tcpip.AddrFrom4(p.Masked().Addr().As4()), tcpip.MaskFromBytes(net4Mask(p.Bits())))
	if err != nil {
		t.Fatalf("NewSubnet: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: 1}})
	return s
}

func net4Mask(bits int) []byte {
	m := make([]byte, 4)
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func addr(s string) tcpip.Address { return tcpip.AddrFrom4(netip.MustParseAddr(s).As4()) }

// ping sends one ICMP echo request from s to dst and waits for the reply.
func ping(t testing.TB, s *stack.Stack, dst string, timeout time.Duration) {
	t.Helper()
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatalf("NewEndpoint: %v", terr)
	}
	defer ep.Close()
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)

	req := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+8))
	req.SetType(header.ICMPv4Echo)
	req.SetSequence(1)
	copy(req.Payload(), "tapstack")
	var r bytes.Reader
	r.Reset(req)
	if _, terr := ep.Write(&r, tcpip.WriteOptions{To: &tcpip.FullAddress{NIC: 1, Addr: addr(dst)}}); terr != nil {
		t.Fatalf("write echo request: %v", terr)
	}
	deadline := time.After(timeout)
	for {
		var buf bytes.Buffer
		_, terr := ep.Read(&buf, tcpip.ReadOptions{})
		if terr == nil {
			reply := header.ICMPv4(buf.Bytes())
			if len(reply) >= header.ICMPv4MinimumSize && reply.Type() == header.ICMPv4EchoReply {
				return
			}
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			t.Fatalf("read echo reply: %v", terr)
		}
		select {
		case <-ready:
		case <-deadline:
			t.Fatalf("no echo reply from %s within %v", dst, timeout)
		}
	}
}

// transfer sends n pseudo-random bytes over gVisor TCP from client to
// server; the server answers with the SHA-256 of what it read, which must
// match what was sent.
func transfer(t testing.TB, client, server *stack.Stack, serverAddr string, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := tcpip.FullAddress{NIC: 1, Addr: addr(serverAddr), Port: 8080}
	ln, err := gonet.ListenTCP(server, full, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("ListenTCP: %v", err)
	}
	defer ln.Close()

	type result struct {
		sum [sha256.Size]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			done <- result{err: err}
			return
		}
		var r result
		h.Sum(r.sum[:0])
		_, r.err = c.Write(r.sum[:])
		done <- r
	}()

	c, err := gonet.DialContextTCP(ctx, client, full, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("DialContextTCP: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	want := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		t.Fatalf("client write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	var got [sha256.Size]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		t.Fatalf("client read digest: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	if got != want || r.sum != want {
		t.Fatalf("digest mismatch: sent %x, server read %x, client got %x", want, r.sum, got)
	}
}

// goroutineBaseline returns a function that fails t if, within a few
// seconds, the number of goroutines has not come back to what it was.
func goroutineBaseline(t testing.TB) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("%d goroutines, want <= %d:\n%s", n, before, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
