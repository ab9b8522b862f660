package pcap_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// Capture the server's side of a connection and read back why each
// handshake segment was sent or what it did.
func Example() {
	a, b := tap.Pipe()
	var capture bytes.Buffer
	w, err := pcap.New(a, &capture, pcap.Options{Name: "server"})
	if err != nil {
		panic(err)
	}
	server := stack.New(stack.Options{TCP: tcp.Options{Observer: w.Observer(nil)}})
	client := stack.New(stack.Options{})
	server.AddNIC(w, netip.MustParsePrefix("192.0.2.1/24"))
	client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24"))

	ln, _ := conn.Listen(server, "tcp", ":7")
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, _ := ln.Accept()
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, _ := conn.Dial(client, "tcp", "192.0.2.1:7")
	c.Write([]byte("hello"))
	c.Close()
	<-done
	server.Close()
	client.Close()
	w.CloseCapture()

	packets, _ := pcap.ReadAll(&capture)
	n := 0
	for _, p := range packets {
		if _, _, ok := p.TCP(); ok && n < 3 {
			fmt.Printf("%-3v %s\n", p.Direction, p.Comment())
			n++
		}
	}
	// Output:
	// in  SYN queued: SYN queue 1/1024, accept queue 0/4097; CLOSED → SYN-RECEIVED
	// out SYN-ACK
	// in  SYN-RECEIVED → ESTABLISHED; accept queue add: SYN queue 0/1024, accept queue 1/4097
}
