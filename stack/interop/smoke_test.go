package interop

import (
	"bytes"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/internal/gvpeer"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

func TestSmoke(t *testing.T) {
	a, b := tap.Pipe()
	s := stack.New(stack.Options{})
	defer s.Close()
	if _, err := s.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	p, err := gvpeer.New(b, netip.MustParsePrefix("192.0.2.2/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := conn.Listen(s, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := p.Dial(netip.MustParseAddrPort("192.0.2.1:80"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	go func() { c.Write(data); c.CloseWrite() }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want %d", len(got), len(data))
	}
}
