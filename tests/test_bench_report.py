"""The benchmark record: saved results carry their provenance, and bench/README.md's tables are exactly
what `genrec bench report` writes from the committed results (no hand edits drift)."""

from __future__ import annotations

import json

import pytest

from genrec_core.cli import BENCH_CASES
from genrec_core.dev.benchmarks import record, report

SCORING = {"pipeline_users_per_s": 2500, "floor_users_per_s": 3200, "ratio": 0.781, "peak_rss_mb": 1100.5}


def test_committed_tables_are_what_the_report_writes():
    text = report.README.read_text()
    assert report.render_readme(text, report.sections(report.named_records())) == text, (
        "bench/README.md differs from the saved results: run `genrec bench report` (make bench-report)"
    )


def test_every_committed_result_names_its_commit_machine_and_command():
    records = report.named_records()
    assert records, "no saved benchmark results under bench/results/"
    for name, saved in records:
        assert len(saved["commit"]) == 40 and saved["machine"]["cores"] and saved["command"].startswith("genrec "), name
        assert saved["bench"] in BENCH_CASES and saved["result"], name  # a benchmark `genrec bench --save` knows


def test_save_records_provenance_and_the_report_tabulates_and_plots_it(tmp_path):
    path = record.save("scoring", "10k-users-2k-items", SCORING, ["bench", "scoring", "--save"], root=tmp_path)
    saved = json.loads(path.read_text())
    assert path.name == "scoring-10k-users-2k-items.json"
    assert saved["command"] == "genrec bench scoring --save" and saved["result"] == SCORING
    assert saved["versions"]["torch"] and saved["versions"]["numpy"] and saved["machine"]["memory_gb"] > 0
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- report:scoring -->\nstale\n<!-- /report:scoring -->\nend\n")
    blocks = report.sections(report.named_records(tmp_path))
    out = report.render_readme(readme.read_text(), {"scoring": blocks["scoring"]})
    assert "stale" not in out and "| 10k-users-2k-items | 2,500 | 3,200 | 0.781 |" in out
    assert out.startswith("intro\n") and out.endswith("end\n")
    plots = report.draw_plots(report.named_records(tmp_path), tmp_path / "docs")
    assert [p.name for p in plots] == ["bench-scoring.png"]
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plots[0].stat().st_size > 5000


def test_the_nightly_table_shows_each_night_against_the_best_and_where_the_time_went(tmp_path):
    judged = {"recall@20_ratio": 0.962, "ndcg@20_ratio": 0.958, "captured_mass_ratio": 0.96}
    night = {
        "run_date": "2026-11-20",
        "mode": "retrain",
        "served_model": "mult_vae+ease",
        "wall_seconds": 95.3,
        "stage_seconds": {"extract": 19.9, "train": 73.6, "evaluate": 0.8, "score": 0.6, "publish_postgres": 0.3},
        "published": judged,
        "ease": {"recall@20_ratio": 0.927},
        "popularity": {"recall@20_ratio": 0.465},
    }
    result = {
        "log": {"users": 6000, "items": 2000, "events": 320043, "days": 30},
        "k": 20,
        "settings": "defaults",
        "nights": [night],
    }
    record.save("nightly", "6k-users-2k-items", result, ["bench", "nightly", "--save"], root=tmp_path)
    table = "\n".join(report.sections(report.named_records(tmp_path))["nightly"])
    assert "**6,000 users × 2,000 items × 320,043 events, 30 days, k = 20, settings: defaults**" in table
    assert (
        "| 2026-11-20 | retrain | mult_vae+ease | 0.962 | 0.958 | 0.960 | 0.927 | 0.465 "
        "| 95 | 20 | 74 | 0.8 | 0.6 | 0.3 |" in table
    )


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="report:scoring"):
        report.render_readme("no markers here\n", {"scoring": ["| x |"]})


def test_the_cli_saves_a_bench_run_under_its_case(tmp_path, monkeypatch, capsys):
    from genrec_core import cli

    monkeypatch.setattr(record, "RESULTS_DIR", tmp_path)
    argv = ["bench", "scoring", "--users", "3000", "--items", "400", "--chunk-size", "500", "--save"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "scoring-3k-users-400-items.json").read_text())
    assert saved["result"] == printed and saved["command"] == "genrec " + " ".join(argv)


def test_a_gan_row_gets_its_epoch_curves_and_a_partial_record_its_data_sets_references(tmp_path):
    row = {
        "dataset": "ml-1m",
        "model": "cfgan",
        "metrics": {"ndcg@20": 0.25},
        "best_epoch": 2,
        "valid_curve": [0.1, 0.2, 0.15],
        "gan_curves": {"discriminator_accuracy": [0.5, 0.6, 0.55], "generator_adversarial_loss": [0.7, 0.65, 0.7]},
    }
    ease_row = {**row, "model": "cfgan+ease"}  # the same network with the expert: no second curves plot
    record.save("quality", "ml-1m-cfgan", [row, ease_row], ["bench", "quality", "--save"], root=tmp_path)
    plots = report.draw_plots(report.named_records(tmp_path), tmp_path / "docs")
    assert [p.name for p in plots] == ["bench-quality-ml-1m-cfgan.png", "bench-curves-ml-1m-cfgan.png"]
    assert plots[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = "\n".join(report.quality_section(report.named_records(tmp_path)))
    assert "published: CFGAN tuned, ECIR 2022 study N@20 0.380" in table


def _scale_row(label: str, recall: float, **extra) -> dict:
    return {
        "label": label,
        "model": label.split("/")[0].split("+")[0],
        "fit_seconds": 12.5,
        "peak_rss_mb": 900.0,
        "scoring_users_per_s": 4000.0,
        "scoring_vs_floor": 0.8,
        "recall@20": recall,
        "recall_vs_best": round(recall / 0.3, 4),
        "ndcg@20": recall * 0.8,
        **extra,
    }


def test_the_scale_table_and_plot_show_every_case_and_the_comparisons(tmp_path):
    neural = {"epochs_run": 12, "best_epoch": 7, "epoch_seconds": 3.5, "seconds_to_best": 30.0, "expert": None}
    case = {
        "items": 100_000,
        "users": 10_000,
        "fit_interactions": 250_000,
        "items_with_interactions": 60_000,
        "best_achievable": {"recall@20": 0.3, "ndcg@20": 0.25},
        "floor_users_per_s": 5000.0,
        "scoring_chunk": 671,
        "rows": [
            _scale_row("sansa", 0.2),
            _scale_row("mult_vae/full", 0.15, sampled_softmax=False, **neural),
            _scale_row("mult_vae/sampled", 0.149, sampled_softmax=True, **neural),
            {"label": "item_knn", "model": "item_knn", "error": "MemoryError()"},
        ],
        "checks": {"sampled_vs_full": {"recall_ratio": 0.9933, "epoch_seconds_ratio": 0.061}},
    }
    result = {
        "k": 20,
        "events_per_user": 40,
        "epochs_cap": 30,
        "patience": 5,
        "settings": {"sansa": {"weights_per_item": 50}},
        "cases": [case],
    }
    record.save("scale", "10k-users-100k-items", result, ["bench", "scale", "--save"], root=tmp_path)
    records = report.named_records(tmp_path)
    lines = report.sections(records)["scale"]
    text = "\n".join(lines)
    commit = (records[0][1]["commit"] or "?")[:7]
    assert [line for line in lines if line.startswith("| 100,000")] and all(
        line.endswith(f"| {commit} |") for line in lines if line.startswith("| 100,000")
    )  # each row names the commit it was measured at
    assert "| 100,000 | mult_vae/sampled | sampled | – | 3.500 | 30.000 (7/12) |" in text
    assert "| 100,000 | item_knn | failed: MemoryError() |" in text
    assert "| 100,000 | sansa [weights_per_item=50] | – | – | – | – | 12.500 |" in text  # the run's --settings
    assert "sampled vs full softmax (Mult-VAE): recall@20 ratio 0.993, epoch seconds ratio 0.061" in text
    plots = report.draw_plots(report.named_records(tmp_path), tmp_path / "docs")
    assert [p.name for p in plots] == ["bench-scale.png"] and plots[0].stat().st_size > 5000


def test_a_scale_run_with_settings_is_saved_under_a_name_that_says_them():
    from genrec_core.cli import build_parser

    args = build_parser().parse_args(
        [
            "bench",
            "scale",
            "--items",
            "20000,100000",
            "--models",
            "sansa",
            "--settings",
            '{"sansa": {"weights_per_item": 50}}',
        ]
    )
    assert BENCH_CASES["scale"](args) == "10k-users-20k-100k-items-sansa-sansa.weights_per_item-50"
