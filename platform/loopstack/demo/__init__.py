"""The closed-loop demo: replay a year of real data through a running stack (`make demo`)."""
