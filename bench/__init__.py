"""`make bench`: the load benchmark of maas (see bench/README.md)."""
