"""Benchmarks, load generation and synthetic histories: everything `hwledger bench` runs, kept
out of the product modules (producers, projectors, query, schemas), which never import it.

`fleet` is the one synthetic fleet generator every benchmark and test draws from; each other
module is one benchmark, and `cli` registers them all under `hwledger bench`.
"""
