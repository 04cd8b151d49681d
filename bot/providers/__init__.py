"""Model providers: one module per wire format, a registry and a failover router."""
