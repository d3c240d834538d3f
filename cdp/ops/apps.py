from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "cdp.ops"
    label = "ops"
    verbose_name = "Operations"
