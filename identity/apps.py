from django.apps import AppConfig


class IdentityAppConfig(AppConfig):
    """The identity graph. (Not ``IdentityConfig``: that is the normalization settings.)"""

    name = "identity"
    label = "identity"
    verbose_name = "Identity graph"
    default_auto_field = "django.db.models.BigAutoField"
