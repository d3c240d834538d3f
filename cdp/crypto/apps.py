from django.apps import AppConfig


class CryptoConfig(AppConfig):
    name = "cdp.crypto"
    label = "crypto"
    verbose_name = "PII encryption keys"
