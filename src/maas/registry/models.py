"""Registry operations on models: creating one, listing them, reading one with its versions
and aliases."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from maas.errors import AlreadyExists
from maas.registry import repository as repo
from maas.registry.aliasing import audit
from maas.registry.base import RegistryBase
from maas.registry.records import ModelRecord
from maas.registry.tables import Model


class Models(RegistryBase):
    async def create_model(self, *, name: str, description: str, actor: str) -> ModelRecord:
        try:
            async with self._writes.begin() as session:
                model = Model(name=name, description=description, last_version=0)
                session.add(model)
                await session.flush()
                audit(session, actor, "model.create", name, None, {"description": description})
                record = ModelRecord(model.name, model.description, model.created_at)
                generation = await repo.bump_generation(session)
        except IntegrityError:
            raise AlreadyExists(f"model '{name}' already exists") from None
        self._changed(generation)
        return record

    async def list_models(self) -> list[ModelRecord]:
        async with self._sessions() as session:
            return [ModelRecord.from_row(m) for m in await repo.list_models(session)]

    async def get_model(self, name: str) -> ModelRecord:
        async with self._sessions() as session:
            return ModelRecord.from_row(await repo.get_model(session, name=name, children=True))
