"""Where models run. Only this package imports torch (lazily), so the gateway starts fast."""
