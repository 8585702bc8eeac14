"""Benchmarks, each with one typed configuration and a command that prints its figures: the
service under load, online learning over a stream of negotiations (driving the real serving
code), the safety benchmarks and the honesty of off-policy estimates.

The top layer: may import every other one; nothing imports it but the CLI's bench commands."""
