"""qkdnet — metropolitan quantum key distribution networks in software.

Layers (see docs/architecture.md): ``physics`` → ``simulate`` → ``postprocess`` → ``link`` →
``kms`` → ``apps``, with ``keyrate`` (closed-form models) feeding the ``network`` planner.
"""

__version__ = "0.1.0"
