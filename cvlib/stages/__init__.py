"""The steps of the four stages, one module per concern; :mod:`cvlib.pipeline` re-exports them."""
