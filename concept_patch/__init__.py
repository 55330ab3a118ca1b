"""ConceptAttention: the model patching and the maths. No node code lives here.

encode.py and generation.py are the two modes the nodes call; each folder below holds one concern, and a folder
imports only folders below it: families/ (an adapter per model family, the registry, the stream kinds),
stream/ (one run's concept stream), requery/ (re-queries), text/ (concepts), maps/ (SALIENCY and masks, previews),
files/ (save and load), maths/ (the equations), checks/ (errors and input limits).
"""
