"""The demo: a personal-finance agent taken around the whole loop."""
