"""The gateway's side of the worker seam: links to worker processes over `maas.transport`, with
no torch and nothing of the worker side."""
