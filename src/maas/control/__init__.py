"""What the gateways decide together, in each gateway process: the registry generation each
serves, the routing table built from it, the placement lease and its reconciler (workers made to
match the registry), publishing a new version, and the sweep of what a crash left."""
