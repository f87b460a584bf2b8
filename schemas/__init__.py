"""JSON Schemas of arrowbulk's built-in plugins: one folder per plugin, loaded as resources."""
