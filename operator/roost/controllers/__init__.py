"""kopf handlers, one module per kind: thin. Read the object, call the reconciler, apply its plan."""
