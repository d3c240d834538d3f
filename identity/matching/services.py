"""Matcher passes: a full pass over every live profile, and incremental runs over the profiles
that changed since the matcher last saw them (compared with their block-mates only).

One pass: read the fields (decrypted in memory, ``inputs``) -> block -> compare -> score ->
route on the profile graph (``clustering``) -> check the merge rules -> write candidates,
link the auto-merges through ``identity.services.linking`` (the same service an approval
uses) and remember what was seen (``MatchProfile``: fingerprint and blocking-key digests).
Written: feature outcomes, weights, scores, keyed digests. Never a field value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.db import transaction
from django.utils import timezone

from cdp.ops.bulk import bound_cursor, rows_insert
from identity.components import Components
from identity.matching import blocking, clustering, comparing, features, scoring
from identity.matching.config import matching_config
from identity.matching.inputs import (
    Inputs,
    inputs_read,
    live_profiles_with_fields,
    pair_fingerprint,
)
from identity.matching.selectors import profiles_changed_unmatched, profiles_sharing_block_keys
from identity.merging import profile_changes_prune, profile_kind_counts
from identity.models import (
    EdgeRule,
    MatchCandidate,
    MatchModel,
    MatchModelKind,
    MatchProfile,
    MatchStatus,
)
from identity.rules import merge_rules
from identity.services.linking import EvidenceLink, evidence_links_apply

logger = logging.getLogger(__name__)
MATCHER_ACTOR = "matcher"
Progress = Callable[[str, int], None]
# ECM on fewer pairs fits noise: below this a pass keeps the current (or default) weights.
MIN_ECM_PAIRS = 500


@dataclass
class MatchReport:
    profiles: int = 0
    pairs: int = 0  # candidate pairs from blocking
    skipped: int = 0  # already decided, linked, or rejected with unchanged data
    dropped_blocks: int = 0
    routes: dict[str, int] = field(default_factory=dict)  # status -> pairs
    merged: int = 0
    model: str = ""
    scores: list[float] = field(default_factory=list)
    # (score, profile a, profile b) of the pairs that would be / were auto-merged
    merges: list[tuple[float, int, int]] = field(default_factory=list)


def _noop(stage: str, count: int) -> None:
    return None


def matching_full(*, dry_run: bool = False, progress: Progress = _noop) -> MatchReport:
    """Match every live profile with fields against its candidate pairs (blocking keys and a
    sorted neighbourhood). Fits and stores a new ECM model unless a trained logistic model is
    current. ``dry_run`` writes nothing and reports what would merge."""
    profile_ids = live_profiles_with_fields()
    progress("read", len(profile_ids))
    inputs = inputs_read(profile_ids)
    return _match(inputs, focus=None, dry_run=dry_run, progress=progress, refit=True)


def matching_incremental(*, limit: int | None = None) -> MatchReport:
    """Match the profiles that changed since the matcher last saw them (up to ``limit``)
    against their block-mates; returns what it did (``profiles`` 0: nothing was pending)."""
    config = matching_config()
    dirty = profiles_changed_unmatched(limit or config.incremental_batch)
    if not dirty:
        return MatchReport()
    focus_inputs = inputs_read(dirty)
    prepared = features.prepare(focus_inputs.frame)
    digests = blocking.key_digests(blocking.block_keys(prepared))
    mates = profiles_sharing_block_keys(
        sorted({d for ds in digests.values() for d in ds}), exclude=dirty
    )
    inputs = inputs_read([*focus_inputs.frame.index, *mates])
    report = _match(inputs, focus=set(focus_inputs.frame.index), dry_run=False, refit=False)
    _seen_without_fields(sorted(set(dirty) - set(focus_inputs.frame.index)))
    report.profiles = len(dirty)
    return report


def _match(
    inputs: Inputs,
    *,
    focus: set[int] | None,
    dry_run: bool,
    refit: bool,
    progress: Progress = _noop,
) -> MatchReport:
    config = matching_config()
    report = MatchReport(profiles=len(inputs.frame))
    prepared = features.prepare(inputs.frame)
    keys, report.dropped_blocks = blocking.capped(
        blocking.block_keys(prepared), max_block=config.max_block
    )
    if focus is None:
        pairs = blocking.candidate_pairs(keys)
    else:
        pairs = blocking.pairs_with(keys, focus=focus)
    report.pairs = len(pairs)
    progress("pairs", len(pairs))
    known = _known_candidates(pairs, inputs)
    keep = [not _settled(pair, known, inputs) for pair in pairs]
    report.skipped = len(pairs) - sum(keep)
    pairs = pairs[np.array(keep, dtype=bool)] if len(pairs) else pairs
    compared = comparing.compare(pairs, prepared)
    progress("compared", len(pairs))
    model, model_row = _model(compared, refit=refit, dry_run=dry_run)
    report.model = model.kind if model_row is None else f"{model.kind} v{model_row.pk}"
    scored = model.score(compared)
    report.scores = [float(s) for s in scored.scores]
    pair_list = [(int(a), int(b)) for a, b in pairs]
    routed = clustering.route_pairs(pair_list, report.scores, config.thresholds)
    statuses, conflicts = _statuses(pair_list, report.scores, routed)
    for status in statuses:
        report.routes[status] = report.routes.get(status, 0) + 1
    report.merges = [
        (report.scores[i], *pair_list[i])
        for i, status in enumerate(statuses)
        if status == MatchStatus.AUTO_MERGED
    ]
    if dry_run:
        return report
    rows = _candidates_write(
        pair_list, statuses, conflicts, routed, compared, scored, inputs, known, model_row
    )
    _profiles_seen(inputs, keys)
    profile_changes_prune(int(pk) for pk in inputs.frame.index)
    report.merged = _auto_merge(rows, link_batch=config.link_batch, progress=progress)
    return report


# --- what is already known ------------------------------------------------------------------
def _anchor_pair(pair: tuple[Any, Any], inputs: Inputs) -> tuple[int, int]:
    a, b = inputs.anchors[int(pair[0])], inputs.anchors[int(pair[1])]
    return (a, b) if a < b else (b, a)


def _known_candidates(pairs: pd.MultiIndex, inputs: Inputs) -> dict[tuple[int, int], Any]:
    """Anchor pair -> (status, fingerprint, id) of stored candidates, and ``"edge"`` for pairs
    that already have a probabilistic edge (linked, or unmerged by a steward)."""
    anchor_pairs = {_anchor_pair(pair, inputs) for pair in pairs}
    if not anchor_pairs:
        return {}
    lows, highs = zip(*sorted(anchor_pairs), strict=True)
    out: dict[tuple[int, int], Any] = {}
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT c.a_id, c.b_id, c.status, c.fingerprint, c.id FROM identity_matchcandidate c "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS t(a, b) ON c.a_id = t.a AND c.b_id = t.b",
            [list(lows), list(highs)],
        )
        for a, b, status, fingerprint, pk in cursor.fetchall():
            out[(a, b)] = (status, fingerprint, pk)
        cursor.execute(
            "SELECT e.a_id, e.b_id FROM identity_edge e "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS t(a, b) ON e.a_id = t.a AND e.b_id = t.b "
            "WHERE e.rule = %s AND e.event_id IS NULL AND e.record_id IS NULL",
            [list(lows), list(highs), EdgeRule.PROBABILISTIC],
        )
        for a, b in cursor.fetchall():
            out[(a, b)] = "edge"
    return out


DECIDED = {MatchStatus.APPROVED, MatchStatus.AUTO_MERGED}


def _settled(pair: tuple[Any, Any], known: dict[tuple[int, int], Any], inputs: Inputs) -> bool:
    """Nothing to do for this pair: it has an edge, or a steward decided it, or it was rejected
    and neither side's fields changed since."""
    found = known.get(_anchor_pair(pair, inputs))
    if found is None:
        return False
    if found == "edge":
        return True
    status, fingerprint, _ = found
    if status in DECIDED:
        return True
    if status == MatchStatus.REJECTED:
        return fingerprint == _pair_fingerprint(pair, inputs)
    return False


def _pair_fingerprint(pair: tuple[Any, Any], inputs: Inputs) -> str:
    return pair_fingerprint(inputs.fingerprints[int(pair[0])], inputs.fingerprints[int(pair[1])])


# --- model ----------------------------------------------------------------------------------
def current_model() -> tuple[scoring.Model, MatchModel | None]:
    """The newest trained logistic model, else the newest ECM fit, else the default weights."""
    row = (
        MatchModel.objects.filter(kind=MatchModelKind.LOGISTIC).order_by("-pk").first()
        or MatchModel.objects.filter(kind=MatchModelKind.ECM).order_by("-pk").first()
    )
    if row is None:
        return scoring.default_model(), None
    return scoring.model_from_json(row.parameters), row


def _model(
    compared: pd.DataFrame, *, refit: bool, dry_run: bool
) -> tuple[scoring.Model, MatchModel | None]:
    model, row = current_model()
    trained = row is not None and row.kind == MatchModelKind.LOGISTIC
    if not refit or trained or len(compared) < MIN_ECM_PAIRS:
        return model, row
    fitted = scoring.ecm_fit(compared)
    if not fitted.weights:
        return model, row
    if dry_run:
        return fitted, None
    row = MatchModel.objects.create(
        kind=MatchModelKind.ECM,
        parameters=fitted.as_json(),
        trained_on=len(compared),
        evaluation={"pairs": len(compared), "features": sorted(fitted.weights)},
    )
    return fitted, row


# --- routing under the merge rules ----------------------------------------------------------
def _statuses(
    pairs: Sequence[tuple[int, int]], scores: Sequence[float], routed: Sequence[clustering.Routed]
) -> tuple[list[str], list[str]]:
    """Each pair's status; auto-merges are decided in score order on the profiles' current kind
    counts under the merge rules, so a pair a rule refuses (two user ids, a limit, the size
    guardrail) is a ``conflict`` and never merges, and a dry run reports what would happen."""
    statuses = [
        MatchStatus.AUTO_MERGED
        if r.route == clustering.MERGE
        else MatchStatus.PENDING
        if r.route == clustering.REVIEW
        else MatchStatus.DROPPED
        for r in routed
    ]
    conflicts = [""] * len(pairs)
    involved = sorted(
        {
            p
            for pair, s in zip(pairs, statuses, strict=True)
            if s != MatchStatus.DROPPED
            for p in pair
        }
    )
    components: Components[int] = Components(merge_rules())
    for profile_id, counts in profile_kind_counts(involved).items():
        components.add(profile_id, counts=counts, rank=(profile_id,))
    order = sorted(range(len(pairs)), key=lambda i: -scores[i])
    for i in order:
        if statuses[i] == MatchStatus.DROPPED:
            continue
        a, b = pairs[i]
        if statuses[i] == MatchStatus.AUTO_MERGED:
            linked = components.link(a, b)
            outcome = (linked.applied, linked.conflict)
        else:
            conflict = components.conflict_of(a, b)
            outcome = (not conflict, conflict)
        if not outcome[0]:
            statuses[i], conflicts[i] = MatchStatus.CONFLICT, outcome[1]
    return [str(s) for s in statuses], conflicts


# --- writes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    id: int
    a: int
    b: int
    status: str
    score: float
    comparison: dict[str, Any]


def comparison_json(compared: pd.DataFrame, weights: pd.DataFrame, position: int) -> dict[str, Any]:
    """Per feature: agrees (true / false / null when a side lacks the field), its weight in
    bits, and the similarity behind it for the string features. No values."""
    out: dict[str, Any] = {}
    row = compared.iloc[position]
    for feature in comparing.FEATURES:
        value = row[feature.name]
        entry: dict[str, Any] = {
            "field": feature.field,
            "agrees": None if pd.isna(value) else bool(value == 1.0),
            "weight": round(float(weights.iloc[position][feature.name]), 3),
        }
        similarity = row.get(f"{feature.name}__sim")
        if similarity is not None and not pd.isna(similarity):
            entry["similarity"] = round(float(similarity), 3)
        out[feature.name] = entry
    return out


def _candidates_write(
    pairs: Sequence[tuple[int, int]],
    statuses: Sequence[str],
    conflicts: Sequence[str],
    routed: Sequence[clustering.Routed],
    compared: pd.DataFrame,
    scored: scoring.Scored,
    inputs: Inputs,
    known: dict[tuple[int, int], Any],
    model_row: MatchModel | None,
) -> list[_Row]:
    """Upsert the candidates worth keeping (everything but dropped pairs never stored)."""
    now = timezone.now()
    rows: list[tuple[int, int, str, float, dict[str, Any], str, str, bool]] = []
    for i, pair in enumerate(pairs):
        anchors = _anchor_pair(pair, inputs)
        if statuses[i] == MatchStatus.DROPPED and anchors not in known:
            continue
        rows.append(
            (
                *anchors,
                statuses[i],
                float(scored.scores[i]),
                comparison_json(compared, scored.weights, i),
                _pair_fingerprint(pair, inputs),
                conflicts[i],
                routed[i].weak_bridge,
            )
        )
    if not rows:
        return []
    ids = rows_insert(
        MatchCandidate._meta.db_table,
        {
            "a_id": ("bigint[]", [r[0] for r in rows]),
            "b_id": ("bigint[]", [r[1] for r in rows]),
            # an auto-merge is written pending and becomes auto_merged once its edge is applied
            "status": (
                "varchar[]",
                [MatchStatus.PENDING if r[2] == MatchStatus.AUTO_MERGED else r[2] for r in rows],
            ),
            "score": ("float8[]", [r[3] for r in rows]),
            "comparison": ("jsonb[]", [r[4] for r in rows]),
            "model_id": ("bigint[]", [None if model_row is None else model_row.pk] * len(rows)),
            "fingerprint": ("varchar[]", [r[5] for r in rows]),
            "conflict": ("varchar[]", [r[6] for r in rows]),
            "weak_bridge": ("boolean[]", [r[7] for r in rows]),
            "created_at": ("timestamptz[]", [now] * len(rows)),
            "updated_at": ("timestamptz[]", [now] * len(rows)),
            "decided_by": ("varchar[]", [""] * len(rows)),
            "reason": ("text[]", [""] * len(rows)),
        },
        returning=("id", "a_id", "b_id"),
        # A steward's decision stands unless the pair's data changed since (a decision made
        # while this pass ran included: the row is skipped and not auto-merged).
        on_conflict=(
            "ON CONFLICT (a_id, b_id) DO UPDATE SET status = EXCLUDED.status, "
            "score = EXCLUDED.score, comparison = EXCLUDED.comparison, "
            "model_id = EXCLUDED.model_id, "
            "fingerprint = EXCLUDED.fingerprint, conflict = EXCLUDED.conflict, "
            "weak_bridge = EXCLUDED.weak_bridge, updated_at = EXCLUDED.updated_at, "
            "decided_at = NULL, decided_by = '', reason = '' "
            "WHERE identity_matchcandidate.status NOT IN ('approved', 'rejected') "
            "OR identity_matchcandidate.fingerprint <> EXCLUDED.fingerprint"
        ),
    )
    written = {(a, b): pk for pk, a, b in ids}
    return [
        _Row(id=written[(r[0], r[1])], a=r[0], b=r[1], status=r[2], score=r[3], comparison=r[4])
        for r in rows
        if (r[0], r[1]) in written
    ]


def _profiles_seen(inputs: Inputs, keys: pd.DataFrame) -> None:
    """Remember each compared profile's fingerprint and blocking-key digests."""
    digests = blocking.key_digests(keys)
    now = timezone.now()
    ids = sorted(int(pk) for pk in inputs.frame.index)
    if not ids:
        return
    with bound_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO identity_matchprofile (profile_id, anchor_id, fingerprint, block_keys,
                                               matched_at)
            SELECT t.profile_id, t.anchor_id, t.fingerprint,
                   ARRAY(SELECT jsonb_array_elements_text(t.block_keys)), %s
            FROM jsonb_to_recordset(%s::jsonb)
                 AS t(profile_id bigint, anchor_id bigint, fingerprint text, block_keys jsonb)
            ON CONFLICT (profile_id) DO UPDATE SET anchor_id = EXCLUDED.anchor_id,
                fingerprint = EXCLUDED.fingerprint, block_keys = EXCLUDED.block_keys,
                matched_at = EXCLUDED.matched_at
            """,
            [
                now,
                _json_rows(
                    {
                        "profile_id": pk,
                        "anchor_id": inputs.anchors[pk],
                        "fingerprint": inputs.fingerprints[pk],
                        "block_keys": digests.get(pk, []),
                    }
                    for pk in ids
                ),
            ],
        )


def _json_rows(rows: Any) -> str:
    return orjson.dumps(list(rows)).decode()


def _seen_without_fields(profile_ids: Sequence[int]) -> None:
    """Changed profiles with nothing to compare: remembered as seen, so they are not picked
    again until they change."""
    now = timezone.now()
    for pk in profile_ids:
        MatchProfile.objects.update_or_create(
            profile_id=pk,
            defaults={"anchor": None, "fingerprint": "", "block_keys": [], "matched_at": now},
        )


def _auto_merge(rows: Sequence[_Row], *, link_batch: int, progress: Progress) -> int:
    """Link the auto-merge candidates through the linking service, in score order."""
    merging = sorted(
        (r for r in rows if r.status == MatchStatus.AUTO_MERGED), key=lambda r: -r.score
    )
    merged = 0
    for start in range(0, len(merging), link_batch):
        chunk = merging[start : start + link_batch]
        with transaction.atomic():
            results = evidence_links_apply(
                links=[
                    EvidenceLink(
                        a_id=r.a,
                        b_id=r.b,
                        rule=EdgeRule.PROBABILISTIC,
                        score=r.score,
                        evidence=match_evidence(r.id, r.comparison, decided_by=MATCHER_ACTOR),
                    )
                    for r in chunk
                ],
                actor=MATCHER_ACTOR,
            )
            now = timezone.now()
            for row, result in zip(chunk, results, strict=True):
                status = MatchStatus.AUTO_MERGED if result.applied else MatchStatus.CONFLICT
                MatchCandidate.objects.filter(pk=row.id).update(
                    status=status,
                    edge_id=result.edge_id,
                    conflict="" if result.applied else result.conflict,
                    decided_at=now,
                    decided_by=MATCHER_ACTOR,
                )
                merged += result.merged
        progress("linked", len(chunk))
    return merged


def match_evidence(
    candidate_id: int, comparison: dict[str, Any], *, decided_by: str
) -> dict[str, Any]:
    """What a probabilistic edge records: the candidate, who decided, each feature's weight and
    outcome (the fields compared, never their values)."""
    return {
        "candidate": candidate_id,
        "decided_by": decided_by,
        "weights": {name: entry["weight"] for name, entry in comparison.items()},
        "agrees": {name: entry["agrees"] for name, entry in comparison.items()},
    }
