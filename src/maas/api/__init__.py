"""The HTTP edge of a gateway process: the inference fast path and each protocol's codec and
GET routes (`native/`, `v2/`), the operator API (`admin/`), health, `/metrics`, the error table,
the OpenAPI document and the drain of a stopping gateway."""
