"""The identity graph (docs/identity.md): identifiers are nodes, edges are evidence, profiles are
connected components, and the merge ledger explains every merge and unmerge.

Identifier values are never stored in clear: an identifier is found by its blind index and its
value is AES-GCM encrypted under the identifier's own data key, bound to the row id. Nothing in
these tables may hold a value in clear (edge evidence names fields, never values).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import Exact
from django.utils import timezone

from cdp.crypto.blind_index import INDEX_BYTES
from cdp.crypto.models import DataKey
from cdp.ingestion.models import Record, Source

KIND_MAX_LENGTH = 32
ACTOR_MAX_LENGTH = 200


class Profile(models.Model):
    """A connected component of identifiers. When two components join, the older profile
    survives and the other points to it with ``merged_into`` (see ``profile_current``)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_profiles",
    )
    # Derived from the profile's identifiers (their event counters and trait observations) by
    # ``identity.services.profiles``: recomputable at any time, never the source of truth.
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveBigIntegerField(default=0)
    # {name: {"value"?, "pii", "rule", "source", "origin", "origin_id", "observation_id",
    # "observed_at", "observations"}}; a PII trait has no "value" here: it stays encrypted in its
    # observation and is decrypted only for a reader allowed to see it.
    traits = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(merged_into=models.F("id")), name="profile_not_merged_into_self"
            )
        ]
        permissions = [("unmerge_profile", "Can remove evidence and unmerge profiles")]

    def __str__(self) -> str:
        if self.merged_into_id is not None:
            return f"profile {self.pk} (merged into {self.merged_into_id})"
        return f"profile {self.pk}"


class Identifier(models.Model):
    """One (kind, value) node. The value is found by ``blind_index`` and stored encrypted; the
    data key is the identifier's own, so erasing a person destroys exactly their keys."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=KIND_MAX_LENGTH)
    blind_index = models.BinaryField(max_length=INDEX_BYTES)
    value_ciphertext = models.BinaryField()
    # One key per identifier (unique): keys follow identifiers through merges and unmerges.
    data_key = models.OneToOneField(DataKey, on_delete=models.PROTECT, related_name="+")
    # NULL until resolution assigns the identifier to a profile.
    profile = models.ForeignKey(
        Profile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=True,
        related_name="identifiers",
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The profile this identifier was first assigned to: an unmerge gives a split-off side its
    # earlier profile id back (docs/identity.md).
    first_profile = models.ForeignKey(
        Profile, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    # Counters of the events anchored on this identifier; a profile's are their sums, so merges
    # and unmerges move them without reading any event.
    event_count = models.PositiveBigIntegerField(default=0, db_default=0)
    first_event_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the index every lookup by value goes through.
            models.UniqueConstraint(fields=["kind", "blind_index"], name="identifier_kind_index"),
            models.CheckConstraint(
                condition=Exact(Length("blind_index"), INDEX_BYTES),
                name="identifier_blind_index_length",
            ),
        ]

    def __str__(self) -> str:
        # Never the value: this is what the admin and error messages show.
        return f"{self.kind} #{self.pk}"

    @staticmethod
    def value_aad(identifier_id: int) -> bytes:
        """The associated data that binds a value ciphertext to its row."""
        return b"identity.identifier:%d:value" % identifier_id


class EdgeRule(models.TextChoices):
    IDENTIFY = "identify"
    ALIAS = "alias"
    CRM_RECORD = "crm_record"
    PROBABILISTIC = "probabilistic"
    MANUAL = "manual"


class Edge(models.Model):
    """Evidence that two identifiers are one person. Never deleted: an unmerge invalidates the
    edge (who, when, why) and resolution ignores it from then on. An edge a merge rule blocked
    is kept with ``applied=False`` and the ``conflict`` that blocked it."""

    id = models.BigAutoField(primary_key=True)
    # Stored with a.id < b.id, so a pair has one spelling.
    a = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    b = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    rule = models.CharField(max_length=16, choices=EdgeRule.choices)
    # Sources are disabled, never deleted: no index needed for the PROTECT check.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    # No foreign key: the events table is partitioned (its key includes received_at).
    event_id = models.BigIntegerField(null=True, blank=True)
    record = models.ForeignKey(
        Record, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    score = models.FloatField(null=True, blank=True)
    # Feature weights, the fields the identifiers were read from; never values.
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    applied = models.BooleanField(default=True)
    conflict = models.CharField(max_length=100, blank=True, default="")
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidated_by = models.CharField(max_length=ACTOR_MAX_LENGTH, blank=True, default="")
    invalidation_reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(a__lt=models.F("b")), name="edge_a_lt_b"),
            models.CheckConstraint(
                condition=models.Q(applied=True, conflict="")
                | (models.Q(applied=False) & ~models.Q(conflict="")),
                name="edge_conflict_iff_not_applied",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    invalidated_at__isnull=True, invalidated_by="", invalidation_reason=""
                )
                | (models.Q(invalidated_at__isnull=False) & ~models.Q(invalidated_by="")),
                name="edge_invalidation_has_actor",
            ),
            # The same evidence is never stored twice. One constraint per kind of origin, partial,
            # because a deleted record leaves its edges with record NULL (they must not collide).
            models.UniqueConstraint(
                fields=["a", "b", "rule", "event_id"],
                condition=models.Q(event_id__isnull=False),
                name="edge_unique_event_evidence",
            ),
            models.UniqueConstraint(
                fields=["a", "b", "rule", "record"],
                condition=models.Q(record__isnull=False),
                name="edge_unique_record_evidence",
            ),
            # A re-run of the matcher finds the same pair again: one edge, also once invalidated
            # (otherwise the matcher would undo an unmerge).
            models.UniqueConstraint(
                fields=["a", "b"],
                condition=models.Q(
                    rule=EdgeRule.PROBABILISTIC, event_id__isnull=True, record__isnull=True
                ),
                name="edge_unique_probabilistic",
            ),
            # One live manual link per pair; after an unmerge an operator may link them again.
            models.UniqueConstraint(
                fields=["a", "b"],
                condition=models.Q(
                    rule=EdgeRule.MANUAL,
                    event_id__isnull=True,
                    record__isnull=True,
                    invalidated_at__isnull=True,
                ),
                name="edge_unique_live_manual",
            ),
        ]
        # "The edges of an identifier": the foreign key indexes on a and b (the partial unique
        # indexes cannot serve it, their conditions are not implied by such a query).
        indexes = [
            # "The evidence an event produced" (rebuild_identity, erasure, the graph API).
            models.Index(
                fields=["event_id"],
                name="edge_event",
                condition=models.Q(event_id__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} edge {self.a_id}-{self.b_id}"


class LedgerAction(models.TextChoices):
    MERGE = "merge"
    UNMERGE = "unmerge"
    CONFLICT = "conflict"
    GUARDRAIL = "guardrail"


class MergeLedgerEntry(models.Model):
    """Append-only: one row per merge, unmerge, blocked edge or guardrail hit. ``actor`` is
    ``"resolver"``, ``"api:<token name> #<token id>"`` or ``"admin:<user>"``."""

    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=16, choices=LedgerAction.choices)
    # Served by the (profile, created_at) index below.
    profile = models.ForeignKey(
        Profile, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    other_profile = models.ForeignKey(
        Profile, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    edge = models.ForeignKey(
        Edge, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries"
    )
    actor = models.CharField(max_length=ACTOR_MAX_LENGTH)
    reason = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "merge ledger entries"
        indexes = [models.Index(fields=["profile", "created_at"], name="ledger_profile_time")]

    def __str__(self) -> str:
        return f"{self.action} of profile {self.profile_id} by {self.actor}"


class TraitObservation(models.Model):
    """What identify calls and CRM records said a trait is, attached to the identifier it arrived
    through (the event's anchor, the record's ``external`` identifier), so it follows that
    identifier through merges and unmerges like its events do. A profile's traits are the
    survivorship of its identifiers' observations (``identity.survivorship``).

    Identify calls repeat the same traits on every page, so an event observation stands for
    every statement of one value by one source through one identifier: ``count`` of them, the
    first at ``first_observed_at`` by ``first_event_id``, the latest at ``observed_at`` by
    ``event_id``; the table grows with distinct values, not with calls. A record's observation
    is its current field (replaced when the record changes).

    A PII trait's value is in ``value_ciphertext``, under the identifier's data key (erasing the
    person destroys it) and bound to this row's id; ``value`` is then NULL. ``value_digest`` (an
    HMAC of the canonical value, never the value) is how a repeated statement finds its row.
    """

    id = models.BigAutoField(primary_key=True)
    identifier = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=255)
    value = models.JSONField(null=True, blank=True)
    value_ciphertext = models.BinaryField(null=True, blank=True)
    value_digest = models.CharField(max_length=64)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+", db_index=False)
    count = models.PositiveIntegerField(default=1)
    first_observed_at = models.DateTimeField()
    observed_at = models.DateTimeField()
    # No foreign key: the events table is partitioned (its key includes received_at).
    first_event_id = models.BigIntegerField(null=True, blank=True)
    event_id = models.BigIntegerField(null=True, blank=True)
    record = models.ForeignKey(
        Record, on_delete=models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(event_id__isnull=True) ^ models.Q(record__isnull=True),
                name="observation_one_origin",
            ),
            models.CheckConstraint(
                condition=models.Q(value__isnull=True) | models.Q(value_ciphertext__isnull=True),
                name="observation_value_or_ciphertext",
            ),
            models.CheckConstraint(
                condition=models.Q(first_observed_at__lte=models.F("observed_at")),
                name="observation_first_before_last",
            ),
            # The row a repeated statement adds to (the upsert's conflict target).
            models.UniqueConstraint(
                fields=["identifier", "name", "source", "value_digest"],
                condition=models.Q(record__isnull=True),
                name="observation_event_value",
            ),
            # A changed record replaces its observations; also the index that finds them.
            models.UniqueConstraint(
                fields=["record", "name"],
                condition=models.Q(record__isnull=False),
                name="observation_record_name",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} of identifier {self.identifier_id}"

    @staticmethod
    def value_aad(observation_id: int) -> bytes:
        return b"identity.traitobservation:%d:value" % observation_id


class ProfileChange(models.Model):
    """Profiles whose identifiers, events or traits changed since their consumers last looked:
    one row per profile, upserted by every resolver batch, merge and unmerge. Two consumers read
    it: segments (which records the ``changed_at`` it evaluated in ``segments_seen_at``) and the
    probabilistic matcher (whose ``MatchProfile.matched_at`` says when it last compared the
    profile); a row is deleted once both have seen its latest change
    (``identity.merging.profile_changes_prune``)."""

    profile = models.OneToOneField(
        Profile, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    changed_at = models.DateTimeField()
    segments_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Segments' queue: the changes it has not evaluated, oldest first.
            models.Index(
                fields=["changed_at", "profile"],
                name="profilechange_segments_queue",
                condition=models.Q(segments_seen_at__isnull=True)
                | ~models.Q(segments_seen_at=models.F("changed_at")),
            )
        ]

    def __str__(self) -> str:
        return f"profile {self.profile_id} changed at {self.changed_at:%Y-%m-%d %H:%M:%S}"


class ResolutionFailure(models.Model):
    """An event or record the resolver could not process (a ciphertext that does not open, a
    bug): set aside so the rest of the queue keeps moving, and kept here until an operator
    retries it (``manage.py retry_resolution_failures``). The event is marked resolved to no
    identifier meanwhile; the record keeps its pending version. ``error`` is the exception's
    type and message, which by convention in this code base name ids and kinds, never values."""

    class Origin(models.TextChoices):
        EVENT = "event"
        RECORD = "record"

    id = models.BigAutoField(primary_key=True)
    origin = models.CharField(max_length=8, choices=Origin.choices)
    origin_id = models.BigIntegerField()
    error = models.TextField()
    failed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["origin", "origin_id"], name="resolution_failure_once")
        ]

    def __str__(self) -> str:
        return f"{self.origin} {self.origin_id} failed to resolve"


# --- probabilistic matching (identity/matching, docs/identity.md) ------------------------------
class MatchModelKind(models.TextChoices):
    ECM = "ecm"
    LOGISTIC = "logistic"


class MatchModel(models.Model):
    """One version of the matcher's scoring model: Fellegi-Sunter weights fitted by ECM on a
    full pass, or a logistic regression trained on stewards' decisions with its evaluation.
    Parameters are the feature weights as JSON (``identity.matching.scoring``), never a pickle."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=MatchModelKind.choices)
    parameters = models.JSONField()
    # logistic: cross-validated precision / recall / F1 / ROC AUC; ecm: what it was fitted on
    evaluation = models.JSONField(default=dict, blank=True)
    trained_on = models.PositiveIntegerField(default=0)  # pairs (ecm) or labelled pairs
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind} model v{self.pk}"


class MatchStatus(models.TextChoices):
    PENDING = "pending"  # in the review queue
    APPROVED = "approved"
    REJECTED = "rejected"
    AUTO_MERGED = "auto_merged"
    DROPPED = "dropped"  # scored below the review threshold
    # a merge rule refuses it (two user ids, a limit, the size guardrail): it never merges
    CONFLICT = "conflict"


class MatchCandidate(models.Model):
    """A pair of profiles the matcher compared, by an anchor identifier of each (the edge it
    would add links those two). ``comparison`` holds per feature the outcome, similarity and
    weight, never a value; ``fingerprint`` is a keyed digest of both sides' compared fields, so a
    rejected pair comes back only when its data changes."""

    id = models.BigAutoField(primary_key=True)
    a = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    b = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=MatchStatus.choices)
    score = models.FloatField()
    comparison = models.JSONField(default=dict)
    model = models.ForeignKey(
        MatchModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fingerprint = models.CharField(max_length=64)
    conflict = models.CharField(max_length=100, blank=True, default="")
    # Held a component together alone with a score below the bridge threshold: sent to review
    # instead of merging two groups transitively.
    weak_bridge = models.BooleanField(default=False)
    edge = models.ForeignKey(
        Edge, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=ACTOR_MAX_LENGTH, blank=True, default="")
    reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(a__lt=models.F("b")), name="match_a_lt_b"),
            models.UniqueConstraint(fields=["a", "b"], name="match_pair_once"),
        ]
        indexes = [models.Index(fields=["status", "-score"], name="match_status_score")]

    def __str__(self) -> str:
        return f"match candidate {self.pk} ({self.status}, {self.score:.3f})"


class MatchProfile(models.Model):
    """What the matcher last saw of a live profile: the anchor identifier its fields came
    through, a keyed fingerprint of them, and its blocking keys as keyed digests (never in
    clear) so an incremental run finds a changed profile's block-mates with one indexed query."""

    profile = models.OneToOneField(
        Profile, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    # None: the profile has no fields to compare (it is remembered as seen all the same)
    anchor = models.ForeignKey(
        Identifier, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    block_keys = ArrayField(models.CharField(max_length=32), default=list)
    matched_at = models.DateTimeField()

    class Meta:
        indexes = [GinIndex(fields=["block_keys"], name="match_profile_block_keys")]

    def __str__(self) -> str:
        return f"match state of profile {self.profile_id}"
