"""The runtime: block wiring, the pipeline a packet passes through, the worker loop around it,
dead-letter records and the hooks that observe the loop. See ``docs/architecture.md``."""
