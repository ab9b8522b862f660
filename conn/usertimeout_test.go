package conn_test

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap"
)

// cuttable is link middleware that, once cut, drops every frame in both
// directions: a peer that vanished without a word.
type cuttable struct {
	nested.Endpoint
	cut atomic.Bool
}

func newCuttable(inner gstack.LinkEndpoint) *cuttable {
	c := &cuttable{}
	c.Endpoint.Init(inner, c)
	return c
}

func (c *cuttable) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if c.cut.Load() {
		return pkts.Len(), nil
	}
	return c.Endpoint.WritePackets(pkts)
}

func (c *cuttable) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	if !c.cut.Load() {
		c.Endpoint.DeliverNetworkPacket(proto, pkt)
	}
}

// TestUserTimeout: SetUserTimeout (RFC 5482, Linux TCP_USER_TIMEOUT)
// ends a connection whose peer vanished while data was in flight: Write
// and Read fail with ETIMEDOUT about a second after the cut, where the
// engine's retry limits alone would wait for minutes.
func TestUserTimeout(t *testing.T) {
	a, b := tap.Pipe()
	link := newCuttable(a)
	client := stack.New(stack.Options{})
	server := stack.New(stack.Options{})
	t.Cleanup(func() { client.Close(); server.Close() })
	if _, err := client.AddNIC(link, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.AddNIC(b, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	ln, err := conn.Listen(server, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := conn.Dial(client, "tcp", "192.0.2.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetUserTimeout(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUserTimeout(-1); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("SetUserTimeout(-1): %v, want EINVAL", err)
	}
	link.cut.Store(true)
	if _, err := c.Write([]byte("into the void")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read: %v, want ETIMEDOUT", err)
	}
	t.Logf("ETIMEDOUT after %v", time.Since(start))
}
