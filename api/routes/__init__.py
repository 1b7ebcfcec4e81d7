"""One blueprint per resource: health, models, explanations."""
