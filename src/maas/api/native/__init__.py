"""The native REST dialect (TF-Serving style with `@` refs): its codec and GET routes."""
