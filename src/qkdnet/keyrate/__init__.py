"""Closed-form secret-key-rate models sharing the physics of :mod:`qkdnet.physics`."""
