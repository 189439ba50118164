"""Serving: the model server (KServe V1 + Open Inference Protocol V2), the router, the request log, metrics.

Modules: :mod:`~roost.serving.protocol` (request validation and response shapes, pure),
:mod:`~roost.serving.server` (``roost serve``), :mod:`~roost.serving.router` (``roost router``),
:mod:`~roost.serving.requestlog` (Parquet batches in the store, and their reader),
:mod:`~roost.serving.metrics` (Prometheus). Nothing here imports kopf or the controllers.
"""
