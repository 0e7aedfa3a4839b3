"""HTTP edge of maas: routes, schemas, dependencies and the error renderer."""
