"""The decisions, as plain functions: (spec, observed state, now) -> (status, actions). No I/O."""
