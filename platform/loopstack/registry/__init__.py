"""Registry layer: MLflow model versions, aliases (`champion`, `challenger`) with history, lineage."""
