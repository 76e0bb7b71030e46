"""Recommender systems: collaborative filtering with embeddings and matrix factorisation."""
