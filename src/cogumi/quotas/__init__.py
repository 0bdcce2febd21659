"""Quotas per organisation and data retention."""
