"""Gateway ↔ worker messages: msgspec headers plus raw tensor frames over ZeroMQ."""
