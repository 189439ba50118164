"""Roost: a GitOps operator for the life of machine-learning models."""
