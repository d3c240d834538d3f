from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The memberships section of access (DSAR) exports (consent.privacy.access).
        from segments.privacy import access_section_register, erasure_hook_register_exports

        access_section_register()
        erasure_hook_register_exports()
