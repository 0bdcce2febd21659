"""COGUMI AI Protect: proves what an AI agent leaks or does under attack."""

__version__ = "0.1.0"
