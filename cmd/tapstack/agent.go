package main

import "context"

// runAgent is "tapstack agent": run a long-lived stack. Its flags and wiring go here.
func runAgent(ctx context.Context, e env, args []string) error {
	return errNotImplemented
}
