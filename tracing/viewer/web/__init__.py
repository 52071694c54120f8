"""The monitoring web page (app.py), its waterfall layout and queue view."""
