"""Where artifacts live, by sha256: a local directory or S3-compatible object storage
(`maas.store.base.ArtifactStore`), sealed at rest when the deployment has a key
(`maas.store.sealing`), swept after a crash (`maas.store.sweeper`). Gateways write and read
it; workers only read (their own cache is `maas.worker.cache`)."""
