"""Ingest: the ways in besides the Redis input list.

``http`` (``POST /infer``, with ``?stream=true`` for Server-Sent Events) and ``ws`` (WebSocket
streaming) run the block's pipeline in this instance through an ``Invoker``; ``grpc_server``
serves the ``InferenceProxy`` service and enqueues into the block's own input list. They
depend on ``control`` (the access rule, the server plumbing) and ``transport``, never on
``runtime``, which implements the ``Invoker`` and starts them.
"""
