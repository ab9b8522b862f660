//go:build linux

package tap_test

import (
	"net"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/tap"
)

// These cases fail before any system call, so they need no privileges.
func TestOpenRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []tap.Option
		want string
	}{
		{"", nil, "empty device name"},
		{"tapstack-way-too-long", nil, "at most 15"},
		{"a/b", nil, "contains"},
		{"a b", nil, "contains"},
		{"..", nil, "not allowed"},
		{"tap0", []tap.Option{tap.WithMTU(10)}, "MTU"},
		{"tap0", []tap.Option{tap.WithMAC(net.HardwareAddr{1, 2, 3, 4, 5, 6})}, "group"},
		{"tap0", []tap.Option{tap.WithMAC(net.HardwareAddr{2, 2, 3})}, "6"},
	} {
		d, err := tap.Open(tc.name, tc.opts...)
		if err == nil {
			d.Close()
			t.Errorf("Open(%q) succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestRandomMAC(t *testing.T) {
	a, b := tap.RandomMAC(), tap.RandomMAC()
	if a.String() == b.String() {
		t.Errorf("two random MACs are equal: %v", a)
	}
	for _, m := range []net.HardwareAddr{a, b} {
		if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
			t.Errorf("%v is not a locally administered unicast MAC", m)
		}
	}
}
