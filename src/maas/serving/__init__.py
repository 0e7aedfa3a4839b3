"""The request path of every protocol, in each gateway process: the pipeline (`call.py`) that
every codec plugs into, and the data plane that hands arrays to the backend."""
