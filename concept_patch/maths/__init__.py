"""The ConceptAttention equations on tensors (paper Eq. 7-11), independent of any model class."""
