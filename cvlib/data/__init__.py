"""A shop's data in: adapters for each source, the canonical schema, cleaning, synthetic shops,
per-customer features (DuckDB) and the pseudonymisation of customer ids."""
