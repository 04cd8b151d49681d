"""Local doubles of the model providers and chat platforms, bound to 127.0.0.1 only."""
