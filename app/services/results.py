"""Result rows: a submission's result and per-case rows written or deleted in one
transaction (with the cached analyses they invalidate), and read back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import (
    AnalysisCache,
    CaseResult,
    Result,
    Submission,
)
from evaluator.canonical import canonical_sha256

log = logging.getLogger(__name__)

#: one stored per-case record: the task's per-case fields as the judge wrote them
CaseRecord = dict[str, Any]


# -- writing and deleting ---------------------------------------------------------------
def replace_result(session: Session, submission_id: int, doc: dict[str, Any]) -> None:
    """Delete the old result and per-case rows of a submission and write the new ones
    (and, in the same transaction, drop the cached analyses of its phase and task)."""
    invalidate_analysis(session, submission_id)
    session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
    session.execute(delete(Result).where(Result.submission_id == submission_id))
    cases = list(doc.get("cases") or [])
    body = {k: v for k, v in doc.items() if k != "cases"}
    proto = body.get("protocol") or {}
    session.add(
        Result(
            submission_id=submission_id,
            metrics=dict(body.get("metrics") or {}),
            document=body,
            protocol_sha256=str(proto.get("sha256", "")),
            ground_truth_sha256=str(body.get("ground_truth_sha256", "")),
            evaluator_version=str(body.get("evaluator_version", "")),
            sha256=canonical_sha256(doc),
        )
    )
    session.add_all(
        CaseResult(
            submission_id=submission_id,
            idx=i,
            patient_id=str(c.get("patient_id", "")),
            center=c.get("center"),
            record=dict(c),
        )
        for i, c in enumerate(cases)
    )


def invalidate_analysis(session: Session, submission_id: int) -> None:
    """Drop the cached ranking analyses of the submission's phase and task. Called in
    the transaction that writes or deletes its result; the cache key covers the result
    hashes as well, so an entry can never outlive the rows it was computed from."""
    row = session.execute(
        select(Submission.phase_id, Submission.task).where(Submission.id == submission_id)
    ).first()
    if row is not None:
        session.execute(
            delete(AnalysisCache).where(
                AnalysisCache.phase_id == row.phase_id, AnalysisCache.task == row.task
            )
        )


def delete_results(session: Session, submission_id: int) -> None:
    invalidate_analysis(session, submission_id)
    session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
    session.execute(delete(Result).where(Result.submission_id == submission_id))


# -- keys -------------------------------------------------------------------------------
def result_keys(session: Session, submission_ids: Sequence[int]) -> dict[int, str]:
    """Per submission, what identifies its stored result: the result hash, else (a row
    without one) the time it was written."""
    if not submission_ids:
        return {}
    rows = session.execute(
        select(Result.submission_id, Result.sha256, Result.created_at).where(
            Result.submission_id.in_(list(submission_ids))
        )
    ).all()
    return {
        sid: sha if sha else f"written:{created.isoformat() if created else ''}"
        for sid, sha, created in rows
    }


def load_cases(session: Session, submission_ids: Sequence[int]) -> dict[int, list[CaseRecord]]:
    """The per-case records of each submission, in stored order."""
    out: dict[int, list[CaseRecord]] = {sid: [] for sid in submission_ids}
    if not submission_ids:
        return out
    rows = session.execute(
        select(CaseResult.submission_id, CaseResult.record)
        .where(CaseResult.submission_id.in_(list(submission_ids)))
        .order_by(CaseResult.submission_id, CaseResult.idx)
    ).all()
    for sid, record in rows:
        out[sid].append(dict(record))
    return out
