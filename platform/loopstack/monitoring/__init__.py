"""monitoring layer."""
