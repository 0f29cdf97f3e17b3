"""An example Wilson plugin: an Alpaca exporter and a redaction rule."""
