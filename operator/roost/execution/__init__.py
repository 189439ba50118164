"""Where work runs: an Executor protocol, local subprocesses or Kubernetes Jobs; the same for serving."""
