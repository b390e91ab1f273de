"""A finished run as a model folder: its manifest and ``cvlib score`` (:class:`Scorer`)."""
