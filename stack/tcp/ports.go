package tcp

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// The local ports of actively opened connections. Linux keeps a bind
// bucket per local port, shared by every connection on it, and checks a
// new connection's 4-tuple against its established hash
// (__inet_hash_connect); gVisor's port manager keeps four nested maps per
// reservation, 1.2 KB for every connection with a port of its own, a
// fifth of the heap of a million idle connections. The engine keeps these
// ports itself: a count per local address and port, and per port, against
// which listeners are checked, while the 4-tuple's uniqueness is the
// demuxer's (registerDemux fails on a 4-tuple taken) and the TIME-WAIT
// table's. Listeners keep their reservations in gVisor's port manager.
// The table holds at most MaxConnections + MaxTimeWait entries.

// localPort is a local address and port.
type localPort struct {
	addr tcpip.Address
	port uint16
}

// portTable counts the connections (and TIME-WAIT records) of active
// opens on each local address and port. Its mutex also orders Connect's
// choice of a port against Listen's.
type portTable struct {
	mu     sync.Mutex
	byAddr map[localPort]int32
	byPort map[uint16]int32 // the same, over every address: what a listener on all of them meets
}

// take counts one more connection on addr and port. The caller holds
// t.mu.
func (t *portTable) take(addr tcpip.Address, port uint16) {
	if t.byAddr == nil {
		t.byAddr = make(map[localPort]int32)
		t.byPort = make(map[uint16]int32)
	}
	t.byAddr[localPort{addr, port}]++
	t.byPort[port]++
}

// release counts one connection less on addr and port.
func (t *portTable) release(addr tcpip.Address, port uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := localPort{addr, port}
	if n := t.byAddr[k]; n > 1 {
		t.byAddr[k] = n - 1
	} else {
		delete(t.byAddr, k)
	}
	if n := t.byPort[port]; n > 1 {
		t.byPort[port] = n - 1
	} else {
		delete(t.byPort, port)
	}
}

// inUse reports whether a listener on addr (unspecified: every address)
// and port would meet a connection. The caller holds t.mu.
func (t *portTable) inUse(addr tcpip.Address, port uint16) bool {
	if addr.Len() == 0 || addr.Unspecified() {
		return t.byPort[port] > 0
	}
	return t.byAddr[localPort{addr, port}] > 0
}

// listenerHolds reports whether a listener holds port on addr, for a
// connection of network protocol netProto: an active open may not take
// it (EADDRINUSE, as a bind(2) to a listening port fails).
func (p *Protocol) listenerHolds(netProto tcpip.NetworkProtocolNumber, addr tcpip.Address, port uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.listeners {
		if l.id.LocalPort != port || (l.id.LocalAddress.Len() > 0 && l.id.LocalAddress != addr) {
			continue
		}
		for _, n := range l.netProtos {
			if n == netProto {
				return true
			}
		}
	}
	return false
}
