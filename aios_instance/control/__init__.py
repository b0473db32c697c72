"""The control plane: the HTTP API (probes, parameters, management), parameter updates from
Redis, and the metrics exporter. It sees a running block only through the ``ControlTarget``
protocol (``target.py``) and never imports the runtime. See ``docs/control.md``."""
