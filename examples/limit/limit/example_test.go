package limit_test

import (
	"fmt"
	"io"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/examples/limit/limit"
	"github.com/tapstack/tapstack/stack"
)

// One connection at a time on a tapstack listener: the second client is
// closed at once, without a word.
func ExampleListener() {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	inner, err := conn.Listen(p.Server, "tcp", ":80")
	if err != nil {
		panic(err)
	}
	ln := limit.Listener(inner, 1, limit.Options{})
	defer ln.Close()

	dial := func() *conn.Conn {
		c, err := conn.Dial(p.Client, "tcp", "192.0.2.1:80")
		if err != nil {
			panic(err)
		}
		return c.(*conn.Conn)
	}
	first := dial()
	defer first.Close()
	held, err := ln.Accept() // the one slot
	if err != nil {
		panic(err)
	}
	defer held.Close()

	second := dial()
	defer second.Close()
	go ln.Accept() // takes the second connection and closes it at once
	b, err := io.ReadAll(second)
	fmt.Printf("second client read %q, %v; open %d\n", b, err, ln.Open())
	// Output: second client read "", <nil>; open 1
}
