package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/tapstack/tapstack/tap"
)

// OpenTAP makes a stack on the Linux TAP device name: tap.Open(name,
// tapOpts...), then one interface holding addr (such as 192.0.2.2/24, the
// stack's own address behind the device) with an on-link route. The
// stack owns the device: Close closes it, and a device that tap.Open
// created is then gone. It needs CAP_NET_ADMIN, or a persistent device
// the user owns; without it the error says how to make one.
func OpenTAP(name string, addr netip.Prefix, opts Options, tapOpts ...tap.Option) (*Stack, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("stack: OpenTAP %s: want the stack's address/prefix, such as 192.0.2.2/24", name)
	}
	dev, err := tap.Open(name, tapOpts...)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("%w\n(run as root, or create the device for your user first: ip tuntap add dev %s mode tap user $USER)", err, name)
	}
	if err != nil {
		return nil, err
	}
	s := New(opts)
	// Removing the interface closes the device's endpoint, and Close
	// waits for its read goroutine: the stack's Close is the device's.
	if _, err := s.AddNIC(dev.LinkEndpoint(), addr); err != nil {
		s.Close()
		dev.Close()
		return nil, err
	}
	return s, nil
}
