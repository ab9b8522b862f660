package tcp_test

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// await calls try until it reports done, waiting on changed between tries
// (try takes whatever is there before it reports not done):
// the engine never blocks, so a caller that wants to wait does it this
// way (package conn does it for net.Conn).
func await(changed func() <-chan struct{}, try func() bool) {
	for range 1000 {
		c := changed()
		if try() {
			return
		}
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			panic("no progress")
		}
	}
}

// The user calls of RFC 9293 3.10 on two stacks joined by an in-memory
// cable: OPEN (Listen, Connect, Accept), SEND (Write), CLOSE, RECEIVE
// (Read) and STATUS (State, Info).
func Example() {
	a, b := tap.Pipe()
	server, client := stack.New(stack.Options{}), stack.New(stack.Options{})
	defer client.Close()
	defer server.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		panic(err)
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		panic(err)
	}

	ln, err := server.TCP().Listen(netip.MustParseAddrPort("192.0.2.1:7"), 16) // passive OPEN
	if err != nil {
		panic(err)
	}
	c, err := client.TCP().Connect(netip.AddrPort{}, netip.MustParseAddrPort("192.0.2.1:7")) // active OPEN
	if err != nil {
		panic(err)
	}
	await(c.Changed, func() bool {
		ok, err := c.Established()
		return ok || err != nil
	})
	var s *tcp.Endpoint
	await(ln.Changed, func() bool {
		s, err = ln.Accept()
		return err == nil
	})
	fmt.Println("client:", c.State(), "server:", s.State())

	c.Write([]byte("hello")) // SEND
	c.CloseWrite()           // CLOSE, our direction: FIN after the data
	var got []byte
	buf := make([]byte, 64)
	await(s.Changed, func() bool { // RECEIVE until the FIN
		for range 100 {
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				return errors.Is(err, io.EOF) // or tcp.ErrWouldBlock: wait
			}
		}
		return false
	})
	fmt.Printf("server read %q, then EOF: %v\n", got, s.State())
	await(c.Changed, func() bool { return c.State() == event.FinWait2 }) // the FIN's ACK
	fmt.Println("client:", c.State(), "bytes acked:", c.Info().BytesAcked)
	// Output:
	// client: ESTABLISHED server: ESTABLISHED
	// server read "hello", then EOF: CLOSE-WAIT
	// client: FIN-WAIT-2 bytes acked: 5
}
