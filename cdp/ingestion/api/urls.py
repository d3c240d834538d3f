from django.urls import path

from cdp.ingestion.api import views

urlpatterns = [
    path("track", views.TrackView.as_view(), name="track"),
    path("identify", views.IdentifyView.as_view(), name="identify"),
    path("alias", views.AliasView.as_view(), name="alias"),
    path("page", views.PageView.as_view(), name="page"),
    path("screen", views.ScreenView.as_view(), name="screen"),
    path("group", views.GroupView.as_view(), name="group"),
    path("batch", views.BatchView.as_view(), name="batch"),
    path("records", views.RecordsView.as_view(), name="records"),
    path("events", views.EventListView.as_view(), name="events"),
]
