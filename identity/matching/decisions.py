"""Stewards' decisions on the review queue, and the supervised model trained from them.

Approve links the pair's anchor identifiers with a probabilistic edge through the same linking
service as an auto-merge (merge rules and guardrails apply: a refused link leaves the candidate
``conflict`` with the refused edge kept, as the resolver keeps its refused edges). Reject is
remembered with the pair's data fingerprint: the matcher brings the pair back only when a side's
compared fields change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from cdp.api.errors import Conflict, InvalidInput, NotFound
from identity.matching import scoring
from identity.matching.comparing import FEATURE_NAMES
from identity.matching.config import matching_config
from identity.matching.services import match_evidence
from identity.models import EdgeRule, MatchCandidate, MatchModel, MatchModelKind, MatchStatus
from identity.services.linking import evidence_link

MAX_REASON_LENGTH = 2000
REVIEWABLE = {MatchStatus.PENDING, MatchStatus.DROPPED}


def _candidate(candidate_id: int, reason: str, *, lock: bool = False) -> MatchCandidate:
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"reason is longer than {MAX_REASON_LENGTH} characters.", attr="reason")
    rows = MatchCandidate.objects.filter(pk=candidate_id)
    candidate = (rows.select_for_update() if lock else rows).first()
    if candidate is None:
        raise NotFound(f"No match candidate {candidate_id}.", code="match_candidate_not_found")
    return candidate


def _locked(candidate_id: int, reason: str) -> MatchCandidate:
    """The candidate's row, locked, still open to a decision."""
    return _reviewable(_candidate(candidate_id, reason, lock=True))


def _reviewable(candidate: MatchCandidate) -> MatchCandidate:
    candidate_id = candidate.pk
    if candidate.status not in REVIEWABLE:
        raise Conflict(
            f"Match candidate {candidate_id} is already {candidate.status}.",
            code="match_candidate_decided",
        )
    return candidate


@transaction.atomic
def match_candidate_approve(*, candidate_id: int, actor: str, reason: str = "") -> MatchCandidate:
    """Link the pair and merge its profiles (unless a merge rule refuses).

    The link takes the profiles' locks first and the candidate's row after (a matcher pass
    holds profile locks while it updates candidates: the other order could deadlock); a
    decision made meanwhile is found on the locked row and rolls the link back."""
    candidate = _reviewable(_candidate(candidate_id, reason))
    result = evidence_link(
        a_id=candidate.a_id,
        b_id=candidate.b_id,
        rule=EdgeRule.PROBABILISTIC,
        score=candidate.score,
        evidence=match_evidence(candidate.pk, candidate.comparison, decided_by=actor),
        actor=actor,
    )
    candidate = _locked(candidate_id, reason)
    if result.edge_id is None:
        raise Conflict(
            "This pair already has probabilistic evidence (perhaps removed by an unmerge); "
            "link it manually if it is right.",
            code="edge_exists",
        )
    candidate.status = MatchStatus.APPROVED if result.applied else MatchStatus.CONFLICT
    candidate.conflict = result.conflict
    candidate.edge_id = result.edge_id
    _decided(candidate, actor=actor, reason=reason)
    return candidate


@transaction.atomic
def match_candidate_reject(*, candidate_id: int, actor: str, reason: str = "") -> MatchCandidate:
    """Keep the pair apart; it comes back only if its data changes."""
    candidate = _locked(candidate_id, reason)
    candidate.status = MatchStatus.REJECTED
    _decided(candidate, actor=actor, reason=reason)
    return candidate


def _decided(candidate: MatchCandidate, *, actor: str, reason: str) -> None:
    now = timezone.now()
    candidate.decided_at = candidate.updated_at = now
    candidate.decided_by = actor
    candidate.reason = reason
    candidate.save(
        update_fields=[
            "status",
            "conflict",
            "edge",
            "decided_at",
            "updated_at",
            "decided_by",
            "reason",
        ]
    )


def labelled_pairs() -> tuple[pd.DataFrame, np.ndarray]:
    """Stewards' decisions as training data: feature outcomes (from the stored comparisons,
    no values) and 1 for approved, 0 for rejected."""
    rows = list(
        MatchCandidate.objects.filter(
            status__in=[MatchStatus.APPROVED, MatchStatus.REJECTED]
        ).values_list("comparison", "status")
    )
    data = {
        name: [_outcome(comparison.get(name, {})) for comparison, _ in rows]
        for name in FEATURE_NAMES
    }
    labels = np.array([status == MatchStatus.APPROVED for _, status in rows], dtype=int)
    return pd.DataFrame(data, dtype=float), labels


def _outcome(entry: dict[str, object]) -> float:
    agrees = entry.get("agrees")
    return np.nan if agrees is None else float(bool(agrees))


@transaction.atomic
def match_model_train(*, force: bool = False) -> MatchModel:
    """Train a logistic model version from the stewards' decisions and store it with its
    cross-validated evaluation; it becomes the current model. Needs ``MIN_LABELS`` decisions
    with at least 10 of each kind (InvalidInput otherwise; ``force`` lowers that to 2 each)."""
    features, labels = labelled_pairs()
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    need = 2 if force else 10
    if (not force and len(labels) < matching_config().min_labels) or min(
        positives, negatives
    ) < need:
        raise InvalidInput(
            f"Not enough decisions to train on: {positives} approved, {negatives} rejected.",
            code="not_enough_labels",
        )
    model = scoring.logistic_fit(features, labels)
    evaluation = scoring.logistic_evaluate(
        features, labels, threshold=matching_config().thresholds.upper
    )
    evaluation.update({"approved": positives, "rejected": negatives})
    return MatchModel.objects.create(
        kind=MatchModelKind.LOGISTIC,
        parameters=model.as_json(),
        evaluation=evaluation,
        trained_on=len(labels),
    )
