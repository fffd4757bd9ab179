"""Serving layer: the KServe model runtime, traffic splits, and the backends that deploy them."""
