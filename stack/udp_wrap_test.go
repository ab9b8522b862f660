package stack_test

import (
	"reflect"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
)

// ourLayers counts the wrappers of package stack around one of gVisor's
// values: each is a struct whose first field embeds what it wraps.
func ourLayers(x any) int {
	stackPkg := reflect.TypeFor[stack.Options]().PkgPath()
	n := 0
	for range 8 {
		v := reflect.ValueOf(x)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct || v.Elem().Type().PkgPath() != stackPkg {
			return n
		}
		n++
		x = v.Elem().Field(0).Interface()
	}
	return n
}

// TestUDPOneWrapper: the observer's report of each datagram and the ICMP
// errors for connected sockets share one wrapper of gVisor's IP, UDP and
// UDP sockets, so that a datagram crosses one dispatcher of the stack's
// (the IP wrapper gives each IP endpoint one), and a Write or Close one
// socket wrapper; with an observer or without.
func TestUDPOneWrapper(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  event.Observer
	}{
		{"observed", func(event.Event) {}},
		{"unobserved", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stack.New(stack.Options{TCP: tcp.Options{Observer: tc.obs}})
			ns := st.Netstack()
			for _, n := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
				if got := ourLayers(ns.NetworkProtocolInstance(n)); got != 1 {
					t.Errorf("network protocol %d: %d wrappers, want 1", n, got)
				}
			}
			if got := ourLayers(ns.TransportProtocolInstance(udp.ProtocolNumber)); got != 1 {
				t.Errorf("UDP: %d wrappers, want 1", got)
			}
			var wq waiter.Queue
			ep, err := ns.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			if got := ourLayers(ep); got != 1 {
				t.Errorf("UDP socket: %d wrappers, want 1", got)
			}
		})
	}
}
