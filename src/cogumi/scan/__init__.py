"""``cogumi scan`` (one campaign from the command line, for CI) and ``cogumi demo``."""
