"""Re-queries: new concepts over the image streams an encode recorded, from a byte-bounded cache (and CUDA graphs)."""
