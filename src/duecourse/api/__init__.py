"""The HTTP service: ``create_app`` (``api/app.py``), run by ``duecourse serve``."""

from duecourse.api.app import create_app

__all__ = ["create_app"]
