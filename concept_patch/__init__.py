"""ConceptAttention: the model patching and the math. No node code lives here."""
