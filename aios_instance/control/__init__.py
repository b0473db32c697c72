"""The control plane: the HTTP API (probes, parameters, management), parameter updates from
Redis, and the metrics exporters. See ``docs/control.md``."""
