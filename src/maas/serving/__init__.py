"""The request path of every protocol: the pipeline, routing, the data plane."""
