package main

import "context"

// runTrace is "tapstack trace": print the lifecycle trace of a running stack. Its flags and wiring go here.
func runTrace(ctx context.Context, e env, args []string) error {
	return errNotImplemented
}
