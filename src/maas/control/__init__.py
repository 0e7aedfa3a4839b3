"""The control plane: which generation each gateway serves, who places versions on workers."""
