"""The Open Inference Protocol (KServe v2 / Triton REST): its codec and GET routes."""
