"""Review text models: the BERT encoder (flax.nnx), checkpoints and tokenizers, masked-LM domain
adaptation, sentiment fine-tuning, the encoder + TF-IDF combination and the CPU attention kernel."""
