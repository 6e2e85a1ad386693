"""Per-column drift tests on data profiles, multiple-testing control and the drift verdict."""

from fedloop.monitoring.drift.base import ColumnKind, DriftTest, SummaryKind, TestResult
from fedloop.monitoring.drift.check import check_drift
from fedloop.monitoring.drift.chi2 import ChiSquareTest, merge_sparse_bins
from fedloop.monitoring.drift.jensen_shannon import JensenShannonTest, js_distance
from fedloop.monitoring.drift.ks import KSTest, ks_p_value
from fedloop.monitoring.drift.multiple import CORRECTIONS, Correction, adjust_p_values
from fedloop.monitoring.drift.multivariate import MultivariateResult, domain_classifier_test
from fedloop.monitoring.drift.psi import PSITest
from fedloop.monitoring.drift.report import ColumnDrift, DriftReport
from fedloop.monitoring.drift.select import DRIFT_TESTS, DriftRule, choose_rule, column_kind
from fedloop.monitoring.drift.wasserstein import WassersteinTest, bin_representatives
from fedloop.monitoring.drift.ztest import ProportionZTest, cohens_h

__all__ = [
    "CORRECTIONS",
    "DRIFT_TESTS",
    "ChiSquareTest",
    "ColumnDrift",
    "ColumnKind",
    "Correction",
    "DriftReport",
    "DriftRule",
    "DriftTest",
    "JensenShannonTest",
    "KSTest",
    "MultivariateResult",
    "PSITest",
    "ProportionZTest",
    "SummaryKind",
    "TestResult",
    "WassersteinTest",
    "adjust_p_values",
    "bin_representatives",
    "check_drift",
    "choose_rule",
    "cohens_h",
    "column_kind",
    "domain_classifier_test",
    "js_distance",
    "ks_p_value",
    "merge_sparse_bins",
]
