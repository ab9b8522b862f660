package tap_test

import (
	"fmt"
	"io"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tapstack/tapstack/tap"
)

// Two gVisor stacks joined by an in-memory Ethernet cable talk TCP; ARP
// resolves each other's MAC on the way.
func ExamplePipe() {
	a, b := tap.Pipe()
	mk := func(ep stack.LinkEndpoint, ip string) *stack.Stack {
		s := stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		})
		s.CreateNIC(1, ep)
		addr := tcpip.AddrFrom4(netip.MustParseAddr(ip).As4())
		s.AddProtocolAddress(1, tcpip.ProtocolAddress{
			Protocol:          ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24},
		}, stack.AddressProperties{})
		s.SetRouteTable([]tcpip.Route{{Destination: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}.Subnet(), NIC: 1}})
		return s
	}
	client, server := mk(a, "192.0.2.1"), mk(b, "192.0.2.2")
	defer client.Destroy()
	defer server.Destroy()

	to := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), Port: 7}
	ln, _ := gonet.ListenTCP(server, to, ipv4.ProtocolNumber)
	defer ln.Close()
	go func() {
		c, _ := ln.Accept()
		io.Copy(c, c) // echo
		c.Close()
	}()

	c, err := gonet.DialTCP(client, to, ipv4.ProtocolNumber)
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Write([]byte("hello over a pipe"))
	c.CloseWrite()
	reply, _ := io.ReadAll(c)
	c.Close()
	fmt.Println(string(reply))
	// Output: hello over a pipe
}
