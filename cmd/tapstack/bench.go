package main

import "context"

// runBench is "tapstack bench": measure throughput. Its flags and wiring go here.
func runBench(ctx context.Context, e env, args []string) error {
	return errNotImplemented
}
