"""The `haggler` command: one module per command group; a command parses its options, calls
library code and prints. Imports any layer but `bench` (whose commands import it lazily)."""
