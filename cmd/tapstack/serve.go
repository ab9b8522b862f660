package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
)

// runServe is "tapstack serve": an echo (RFC 862) or discard (RFC 863)
// server on a TAP device, until Ctrl-C.
func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "serve", "")
	lf := addLinkFlags(fs, "serve on")
	port := fs.Int("port", 0, "port to listen on (default 7 for echo, 9 for discard)")
	mode := fs.String("mode", "echo", "echo: send back what arrives; discard: read and drop it")
	trace := fs.Bool("trace", false, "print every engine event, not only state changes")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := lf.check(fs); err != nil {
		return err
	}
	var handle func(net.Conn) (int64, error)
	switch *mode {
	case "echo":
		handle = func(c net.Conn) (int64, error) { return io.Copy(c, c) }
		if *port == 0 {
			*port = 7
		}
	case "discard":
		handle = func(c net.Conn) (int64, error) { return io.Copy(io.Discard, c) }
		if *port == 0 {
			*port = 9
		}
	default:
		return usageErr(fs, "--mode %q: want echo or discard", *mode)
	}
	if *port < 1 || *port > 65535 {
		return usageErr(fs, "--port %d: want 1 to 65535 (or 0: 7 for echo, 9 for discard)", *port)
	}

	out := &syncWriter{w: e.stdout}
	kinds := []event.Kind{event.KindState}
	if *trace {
		kinds = nil
	}
	s, closeStack, err := lf.open(e, tcp.Options{Observer: traceLine(out, "serve", kinds...)})
	if err != nil {
		return err
	}
	defer closeStack(shutdownGrace)
	ln, err := conn.Listen(s, "tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	fmt.Fprintf(out, "%s on %s port %d via %s (Ctrl-C stops)\n", *mode, *lf.addr, *port, *lf.tap)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			n, err := handle(c)
			c.Close()
			fmt.Fprintf(out, "%v: %d bytes, %v\n", c.RemoteAddr(), n, errOrEOF(err))
		}()
	}
}

func errOrEOF(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}
