"""SALIENCY and what is made of it: masks, preview panels and sheets, colours, the legend."""
