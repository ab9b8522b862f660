package event

import "fmt"

// udpString renders a UDP datagram event: "192.0.2.1:53-192.0.2.2:40000
// udp datagram 12 bytes delivered".
func (ev Event) udpString() string {
	head := fmt.Sprintf("%s udp datagram %d bytes", ev.Conn, ev.Key.Len)
	switch ev.Kind {
	case KindUDPDeliver:
		if ev.Note != "" {
			return head + " delivered (" + ev.Note + ")"
		}
		return head + " delivered"
	case KindUDPNoPort:
		if ev.Note != "" {
			return head + ": no port: " + ev.Note
		}
		return head + ": no port"
	case KindUDPDrop:
		return head + " dropped (" + ev.Drop.String() + ")"
	case KindUDPSend:
		return head + " sent"
	}
	return head
}
