package main

import "context"

// runSS is "tapstack ss": list connections and listeners. Its flags and wiring go here.
func runSS(ctx context.Context, e env, args []string) error {
	return errNotImplemented
}
