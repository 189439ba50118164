"""Typed models of Roost's five kinds (``roost.dev/v1alpha1``): the single source of truth.

The CRDs under ``crds/`` are generated from these models by :mod:`roost.api.crdgen`.
"""
