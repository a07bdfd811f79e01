"""The web dashboard over the catalog (`vla-data dashboard`, dashboards/app.py)."""
