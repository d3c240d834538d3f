from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "cdp.ingestion"
    label = "ingestion"
    verbose_name = "Ingestion"
