package stack_test

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestOpenTAP opens a stack on a TAP device that OpenTAP creates in a
// namespace of the test's; the kernel behind it connects to the stack,
// and closing the stack removes the device.
func TestOpenTAP(t *testing.T) {
	if _, err := stack.OpenTAP("tapstack0", netip.Prefix{}, stack.Options{}); err == nil {
		t.Error("OpenTAP without an address: no error")
	}
	ns := taptest.NewNamespace(t)
	var s *stack.Stack
	if err := ns.Do(func() (err error) {
		s, err = stack.OpenTAP("tapstack0", netip.MustParsePrefix("192.0.2.2/24"), stack.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "tapstack0")
	ns.Run(t, "ip", "link", "set", "dev", "tapstack0", "up")
	ln, err := conn.Listen(s, "tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echo(ln)
	var got []byte
	if err := ns.Do(func() error {
		k, err := net.Dial("tcp", "192.0.2.2:7")
		if err != nil {
			return err
		}
		defer k.Close()
		k.Write([]byte("from the kernel"))
		k.(*net.TCPConn).CloseWrite()
		got, err = io.ReadAll(k)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "from the kernel" {
		t.Errorf("echo %q", got)
	}
	s.Close()
	if out := ns.Run(t, "ip", "-o", "link", "show"); containsWord(out, "tapstack0") {
		t.Errorf("the device OpenTAP created outlived the stack:\n%s", out)
	}
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if strings.TrimSuffix(f, ":") == w {
			return true
		}
	}
	return false
}
