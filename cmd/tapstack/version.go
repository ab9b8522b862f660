package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// runVersion is "tapstack version": the module version (set by go
// install .../cmd/tapstack@VERSION; "(devel)" for a build from a checkout),
// the commit it was built from, and the Go toolchain.
func runVersion(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "version", "")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, versionLine())
	return nil
}

func versionLine() string {
	version, commit, dirty := "(devel)", "unknown", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += "+modified"
	}
	return fmt.Sprintf("tapstack %s (commit %s, %s %s/%s)", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
