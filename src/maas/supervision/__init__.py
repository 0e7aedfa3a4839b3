"""The parts of `maas serve` (`maas.supervisor`): its children started, kept and rolled, the
gateway process entry, what each child is given, and the lifeline that ends a child with it."""
