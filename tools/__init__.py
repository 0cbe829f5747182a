"""Bench-top tools: serial replay with fault injection, scoring, the demo, benchmarks."""
