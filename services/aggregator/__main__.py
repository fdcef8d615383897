"""`python -m services.aggregator`: serve the aggregator service."""

from services.aggregator.app import create_app
from shared.adapters.serve import serve
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    serve(create_app(settings), settings.aggregator_port)
