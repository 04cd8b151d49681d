"""Front ends: each turns its platform's events into requests and implements the reply sink."""
