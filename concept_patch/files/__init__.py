"""Saving SALIENCY to the output folder and loading it back, with every field of a file checked."""
