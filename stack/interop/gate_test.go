package interop

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gate is link middleware that stops inbound delivery for good once shut.
//
// It works around a deadlock at teardown: gVisor's Stack.Wait holds the
// stack's lock while it waits for each link endpoint, and both tap.Pipe's
// pumps and a TAP device's read loop may be blocked delivering a frame
// into that same stack (which takes the lock for reading), so Wait never
// returns if frames are in flight. Shutting every gate before closing the
// stacks lets the deliveries finish and drops later frames.
type gate struct {
	nested.Endpoint
	mu   sync.RWMutex
	shut bool
}

func newGate(inner gstack.LinkEndpoint) *gate {
	g := &gate{}
	g.Endpoint.Init(inner, g)
	return g
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (g *gate) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.shut {
		g.Endpoint.DeliverNetworkPacket(proto, pkt)
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (g *gate) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.shut {
		g.Endpoint.DeliverLinkPacket(proto, pkt)
	}
}

// close waits for deliveries in progress and drops every later frame.
func (g *gate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}
