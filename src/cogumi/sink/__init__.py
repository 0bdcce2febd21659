"""``cogumi sink``: a harmless attacker sink that records what an exfiltration sent.

Customer-side like the sidecar: it must never import the database or web stack.
"""
