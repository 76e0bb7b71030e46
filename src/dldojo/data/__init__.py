"""Datasets: an offline-first store with checksums, plus one loader module per dataset family."""
