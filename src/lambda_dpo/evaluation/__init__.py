"""Evaluation: listwise ranking metrics (more evaluation tools live in sibling modules)."""

from lambda_dpo.evaluation.metrics import kendall_tau, ndcg, top1_accuracy

__all__ = ["top1_accuracy", "ndcg", "kendall_tau"]
