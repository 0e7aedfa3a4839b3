"""Admin routes of API keys: create one (its secret is shown only then), list them, revoke one
(answered once every live gateway refuses it)."""

from __future__ import annotations

from maas.api.admin.answers import KeyCreated, KeyList, KeyOut, KeyRevoked
from maas.api.admin.params import KeyId
from maas.api.admin.propagation import once_served
from maas.api.admin.requests import CreateKey
from maas.api.admin.revalidation import admin_router
from maas.api.deps import AdminDep, ServicesDep
from maas.api.openapi import BAD_JSON, INVALID, admin_errors
from maas.auth import keys as auth

router = admin_router()


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    response_model_exclude_unset=True,
    response_description="The new key and its secret (shown only here)",
    responses=admin_errors({400: BAD_JSON, 422: INVALID}),
)
async def create_key(body: CreateKey, services: ServicesDep, who: AdminDep) -> KeyCreated:
    record, secret = await auth.create_key(
        services.registry,
        name=body.name,
        scopes=[s.value for s in body.scopes],
        actor=who.name,
        models=body.models,
        expires_at=body.expires_at,
        rate_limit_per_s=body.rate_limit_per_s,
    )
    return KeyCreated.with_secret(record, secret)


@router.get(
    "/keys",
    response_model=KeyList,
    response_model_exclude_unset=True,
    response_description="Every key, without secrets",
    responses=admin_errors(),
)
async def list_keys(services: ServicesDep) -> KeyList:
    return KeyList(keys=[KeyOut.from_record(k) for k in await services.registry.list_keys()])


@router.delete(
    "/keys/{key_id}",
    response_model=KeyRevoked,
    response_model_exclude_unset=True,
    response_description="The key, revoked on every live gateway that confirmed",
    responses=admin_errors(
        {
            404: "`key_not_found`: no active key with that id",
            409: "`last_admin_key`: it is the last admin key",
            422: INVALID,
        }
    ),
)
async def delete_key(key_id: KeyId, services: ServicesDep, who: AdminDep) -> KeyRevoked:
    """Revoke a key; answers once every live gateway refuses it (or after the propagation
    timeout, with the others in `missing`). 409 for the last admin key."""
    record, generation = await services.registry.revoke_key(key_id, actor=who.name)
    return KeyRevoked.served(record, await once_served(services, generation))
