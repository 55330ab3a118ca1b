"""Concepts: names, and one vector each from the user's text encoder (the concept's own tokens, located in its
conditioning)."""
