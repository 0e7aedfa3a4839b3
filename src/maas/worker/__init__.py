"""The worker process: where models load and run, and the only package that imports torch
(lazily, so a gateway that runs its worker in-process still starts fast). It speaks to gateways
only through `maas.transport`; it never imports the registry, the API or the gateway side."""
