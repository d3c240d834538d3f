"""Probabilistic matching (docs/identity.md, "Probabilistic matching").

Profiles the deterministic keys could not join are compared on their person fields: blocking
(``blocking``) proposes candidate pairs, ``comparing`` turns each pair into binary agreement
features, ``scoring`` weighs them (Fellegi-Sunter fitted by ECM, or a logistic regression
trained on stewards' decisions), ``clustering`` decides which links to apply inside connected
components, and ``services`` routes pairs to auto-merge, the review queue or nowhere.
``inputs`` reads the fields, decrypted in the worker's memory only.
"""
