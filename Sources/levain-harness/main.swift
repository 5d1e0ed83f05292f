import LevainHarness

// PID 1 of a session's jail: see LevainHarness.Harness and docs/PROTOCOL.md.
Harness().run()
