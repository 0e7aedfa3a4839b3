"""What gateways and workers both speak, and nothing else: the typed messages, the Unix stream
wire and ZeroMQ framing, CurveZMQ keys, and the telemetry workers send with their heartbeats."""
