"""Deployment with Docker Compose: the containers' health check (`deploy.compose.healthcheck`)
and the files the compose stacks mount (MongoDB set-up, Prometheus, Grafana, the gateway)."""
