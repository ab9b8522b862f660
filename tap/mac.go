package tap

import (
	"crypto/rand"
	"fmt"
	"net"
)

// RandomMAC returns a random locally administered unicast MAC address.
func RandomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	// crypto/rand.Read never fails (it crashes the program if the kernel
	// cannot supply randomness), so the error is not checked.
	_, _ = rand.Read(mac)
	// Locally administered (bit 1 set), unicast (bit 0 clear): it cannot
	// collide with a vendor's address and is not a group address.
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

func validMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("MAC %v is %d bytes, want 6", mac, len(mac))
	case mac[0]&0x01 != 0:
		return fmt.Errorf("MAC %v is a group (multicast) address", mac)
	case string(mac) == string(make([]byte, 6)):
		return fmt.Errorf("MAC %v is all zeroes", mac)
	}
	return nil
}
