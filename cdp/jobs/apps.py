from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "cdp.jobs"
    label = "jobs"
    verbose_name = "Background jobs"
