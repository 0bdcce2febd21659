"""``python -m cogumi`` runs the CLI."""

from cogumi.cli import main

main()
