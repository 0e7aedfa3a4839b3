"""Checks of what clients send, shared by the gateway and the worker processes: arrays against a
tensor signature, strict JSON numbers, and how deep stored JSON may nest."""
