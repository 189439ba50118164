"""Statistics: drift tests and the canary's confidence sequences (numpy/scipy, vectorised)."""
