"""Domain services: plain functions over the ORM, no Tornado."""
