"""The wire protocol's version. Bump it with any change to `messages` that an older peer would
misread. Every heartbeat carries it both ways (`Ping.protocol`, `WorkerStatus.protocol`, fields
every release decodes): a peer of another version is refused and shown as such
(`GET /admin/workers`), never taken for a dead worker."""

PROTOCOL = 2  # 2: artifacts fetched by sha256 (Fetch, Chunk)
