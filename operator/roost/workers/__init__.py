"""Entry points that run inside a unit of work (a subprocess or a Kubernetes Job).

Contract: ``roost worker <name> --input <uri of input.json> --output <uri prefix>``. The worker reads
its input, writes its artifacts to the store, and writes ``<output>/result.json`` last:
``{"ok": true, ...fields}`` or ``{"ok": false, "reason": "CamelCase", "message": "..."}`` when the
input is bad (bad data, a failed gate). A crash (non-zero exit, no result) means retry. Workers never
talk to the Kubernetes API; the operator reads the result.
"""
