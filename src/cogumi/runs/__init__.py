"""Run lifecycle, queue integration, run routes."""
