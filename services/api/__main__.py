"""`python -m services.api`: serve the api service."""

from services.api.app import create_app
from shared.adapters.serve import serve
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    serve(create_app(settings), settings.api_port)
