"""Event-level Monte Carlo of one QKD link: what Alice sent and what Bob's detectors saw."""
