"""`python -m services.ingest`: serve the ingest service."""

from services.ingest.app import create_app
from shared.adapters.serve import serve
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    serve(create_app(settings), settings.ingest_port)
