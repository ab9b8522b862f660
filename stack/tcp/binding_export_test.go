package tcp

// Hooks for the black-box tests of what package stack drives through
// tcpbind.Binding (shutdown_test.go): the engine's half of
// stack.Stack.Shutdown and of stack.Stack.Close, one connection at a time.

// Shutdown is Binding.Shutdown.
func (p *Protocol) Shutdown() { p.shutdown() }

// Drained is Binding.Drained.
func (p *Protocol) Drained() <-chan struct{} { return p.drainedChan() }

// StackAbort is what Binding.Abort does to one connection.
func (e *Endpoint) StackAbort() { e.abort() }
