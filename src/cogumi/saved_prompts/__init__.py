"""An org's library of adversary prompts and agent replies kept for reuse."""
