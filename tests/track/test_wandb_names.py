"""The W&B sink's pure parts: names, ids, the flat config, online or offline, the tables.

None of these needs the wandb package (test_wandb.py runs the real one)."""

from __future__ import annotations

import hashlib
import math
import socket

import pandas as pd
import pytest

from ablate.track import wandb as wb
from ablate.track.trial import TrackedTrial, ended_status
from ablate.track.wandb_study import configs_rows, effects_rows, mean_sd
from ablate.trials.lifecycle import TrialStatus


def test_the_config_is_flat_with_names_that_filter_and_group():
    spec = {"model": {"backbone": "mobilenet_v3_small", "num_classes": None,
                      "aspp_rates": [12, 24, 36], "keep_last_expansion": False,
                      "selective": {"enabled": False, "tau_final": None}},
            "train": {"lr": 0.003, "grad_clip": None}, "seed": 2}
    trial = TrackedTrial("tiny", "abc123", "keep_last_expansion=false/seed=2", "/runs/tiny/abc123",
                         axes={"model.keep_last_expansion": False}, seed=2, variant="base",
                         config_name="keep_last_expansion=false", spec=spec)
    assert wb.run_config(trial) == {
        "model_backbone": "mobilenet_v3_small", "model_num_classes": "none",
        "model_aspp_rates": "[12,24,36]", "model_keep_last_expansion": False,
        "model_selective_enabled": False, "model_selective_tau_final": "none",
        "train_lr": 0.003, "train_grad_clip": "none", "seed": 2,
        "study": "tiny", "trial_id": "abc123", "configuration": "keep_last_expansion=false",
        "variant": "base", "axes": "model_keep_last_expansion", "run_folder": "/runs/tiny/abc123"}


def test_two_keys_that_flatten_alike_both_stay():
    trial = TrackedTrial("s", "t", "n", "/r", spec={"a": {"b_c": 1}, "a_b": {"c": 2}})
    config = wb.run_config(trial)
    assert (config["a_b_c"], config["a_b__c"]) == (1, 2)


def test_without_a_spec_the_axes_and_the_trial_are_the_config():
    trial = TrackedTrial("s", "t1", "lr=0.1/seed=3", "/r", axes={"train.lr": 0.1, "note": None},
                         seed=3, config_name="lr=0.1")
    assert wb.run_config(trial) == {"train_lr": 0.1, "note": "none", "study": "s",
                                    "trial_id": "t1", "configuration": "lr=0.1",
                                    "variant": "base", "seed": 3, "axes": "train_lr,note",
                                    "run_folder": "/r"}


def test_config_values_are_never_null_or_nested():
    assert [wb.config_value(v) for v in (None, True, 3, 0.5, "x", [1, "a"], (2,), {"k": 1},
                                         float("nan"))] == [
        "none", True, 3, 0.5, "x", '[1,"a"]', "[2]", '{"k":1}', "nan"]


def test_run_ids_come_from_the_trial_id_and_study():
    first = wb.run_id("quickstart", "a4a1abb585a8")
    assert first == "a4a1abb585a8-" + hashlib.sha256(b"quickstart").hexdigest()[:6]
    assert wb.run_id("quickstart", "a4a1abb585a8", attempt=1) == first
    assert wb.run_id("quickstart", "a4a1abb585a8", attempt=2) == first + "-a2"
    assert wb.run_id("other", "a4a1abb585a8") != first  # the same trial in two studies
    assert wb.run_id("s", "a/b c").startswith("a_b_c-")


def test_metric_names_keep_sections_and_lose_what_w_and_b_cannot_filter():
    assert wb.metric_name("latency_ms@onnxruntime/bs8") == "latency_ms_onnxruntime/bs8"
    assert wb.metric_name("iou/background") == "iou/background"
    assert wb.metric_name("latency_ms_p90") == "latency_ms_p90"


def test_the_outcome_is_read_in_one_place():
    done = wb.trial_outcome({"status": "done", "final": {"miou": 0.4}})
    assert done == (TrialStatus.DONE, {"miou": 0.4}) and done[0] is TrialStatus.DONE
    assert wb.trial_outcome({"status": "failed", "final": {"miou": 0.4}}) == (
        TrialStatus.FAILED, {})
    assert wb.trial_outcome({"status": "interrupted"}) == (None, {})


@pytest.mark.parametrize("status", list(TrialStatus))
def test_only_a_recorded_result_is_finished_for_the_trackers(status):
    # running, pending, preempted, timed_out: no result yet, resumed later (never finished)
    expected = status if status in (TrialStatus.DONE, TrialStatus.FAILED) else None
    assert ended_status({"status": status.value}) is expected
    assert ended_status({"status": "interrupted"}) is None and ended_status({}) is None


def test_the_project_is_the_study_unless_wandb_project_says(monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert wb.project_for("a/b:c") == "a-b-c"
    monkeypatch.setenv("WANDB_PROJECT", "lab")
    assert wb.project_for("a/b:c") == "lab"


# -- online or offline -------------------------------------------------------------------


def test_offline_when_asked_or_disabled_without_a_probe():
    assert wb.choose_mode({"WANDB_MODE": "offline"}) == ("offline", None)
    assert wb.choose_mode({"WANDB_MODE": "dryrun", "WANDB_API_KEY": "k"}) == ("offline", None)
    assert wb.choose_mode({"WANDB_MODE": "disabled"}) == ("disabled", None)


def test_offline_without_an_api_key(tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    netrc.chmod(0o600)
    mode, reason = wb.choose_mode({"NETRC": str(netrc)})
    assert mode == "offline" and reason.startswith("no API key")
    # `wandb login` writes the key to netrc under the server's host
    assert wb.has_credentials("https://example.org", {"NETRC": str(netrc)})
    assert not wb.has_credentials("https://api.wandb.ai", {"NETRC": str(netrc)})


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes the handshake; nobody reads the request
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def refused_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens


def test_a_server_that_does_not_answer_is_offline_within_the_probe_timeout(silent_server,
                                                                          monkeypatch):
    import urllib.request

    monkeypatch.setattr(wb, "PROBE_TIMEOUT_S", 0.5)
    asked = []  # the timeout of each request (not the clock: a loaded machine is slow)
    real = urllib.request.urlopen

    def urlopen(request, *args, timeout, **kwargs):
        asked.append((request.full_url, timeout))
        return real(request, *args, timeout=timeout, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    mode, reason = wb.choose_mode({"WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": silent_server})
    assert asked == [(silent_server, 0.5)]  # one request, given up after 0.5 s, not wandb's 90
    assert mode == "offline" and reason == f"{silent_server} does not answer (timed out)"


def test_a_refused_connection_is_offline(refused_url):
    mode, reason = wb.choose_mode({"WANDB_MODE": "online", "WANDB_BASE_URL": refused_url})
    assert mode == "offline" and reason.startswith(f"{refused_url} does not answer (")


def test_any_http_answer_counts_as_reachable(tmp_path):
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        assert wb.probe(f"http://127.0.0.1:{server.server_port}") is None
    finally:
        thread.join()
        server.server_close()


# -- the summary run's tables ------------------------------------------------------------


def test_the_effects_table_keeps_interval_n_and_verdict():
    effects = pd.DataFrame([{
        "study": "s", "kind": "main", "axis": "model.keep_last_expansion",
        "change": "true -> false", "metric": "miou", "unit": "mIoU points", "n": 3,
        "method": "paired t (seeds)", "estimate": -1.25, "ci_low": -2.5, "ci_high": 0.0,
        "ci_level": 0.95, "family": 1, "p": 0.04, "p_adj": 0.08, "mde": 1.0,
        "seeds_needed": math.nan, "params_pct": -53.0, "gflops_pct": -13.6,
        "latency_pct": math.nan, "verdict": "inconclusive", "design": "fixed seeds, alpha 0.05",
        "configs": ("a", "b")}])
    columns, rows = effects_rows(effects)
    assert columns == ["study", "kind", "axis", "change", "metric", "unit", "n", "method",
                       "estimate", "ci_low", "ci_high", "ci_level", "p", "p_adj", "verdict",
                       "params_pct", "gflops_pct", "latency_pct", "design"]
    assert rows == [["s", "main", "model.keep_last_expansion", "true -> false", "miou",
                     "mIoU points", 3, "paired t (seeds)", -1.25, -2.5, 0.0, 0.95, 0.04, 0.08,
                     "inconclusive", -53.0, -13.6, None, "fixed seeds, alpha 0.05"]]
    assert all(type(v) in (str, int, float, type(None)) for v in rows[0])  # no numpy scalars


def test_the_configurations_table_shows_mean_sd_and_n():
    configs = pd.DataFrame([
        {"study": "s", "config_name": "k=true", "variant": "base", "n": 3, "miou_mean": 31.046,
         "miou_std": 0.8249, "params": 10, "gflops": 0.5, "latency_ms": math.nan,
         "axis:model.k": True, "pareto": True, "pareto_mark": "*"},
        {"study": "s", "config_name": "k=false", "variant": "base", "n": 1, "miou_mean": 29.5,
         "miou_std": math.nan, "params": 8, "gflops": 0.4, "latency_ms": 2.0,
         "axis:model.k": False, "pareto": False, "pareto_mark": ""}])
    columns, rows = configs_rows(configs)
    assert columns == ["study", "configuration", "variant", "miou", "n", "miou_mean", "miou_std",
                       "params", "gflops", "latency_ms", "pareto", "model.k"]
    assert rows == [["s", "k=true", "base", "31.05 ± 0.82", 3, 31.046, 0.8249, 10, 0.5, None,
                     True, True],
                    ["s", "k=false", "base", "29.50", 1, 29.5, None, 8, 0.4, 2.0, False, False]]
    assert mean_sd(None, None) == ""
