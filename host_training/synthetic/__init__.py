"""Seeded synthetic data: parametric and physics-based (Green's functions) generators, noise
and sensor models, active sources."""
