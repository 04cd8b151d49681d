"""llama-relay: the core (settings, token budget, providers, reply stream, store, service, CLI)."""

__version__ = "0.1.0"
